"""Worker of test_ddp.py, run by torchrun (not collected by pytest): distributed evaluation, then DDP training.

Usage: ``torchrun --nproc_per_node=2 test/ddp_worker.py OUT EVAL_CKPT ROOT -- TRAIN_ARGS...``. Rank 0 writes
``OUT/dist_eval.pt`` (the all-reduced confusion matrices and counters); every rank writes ``OUT/params_rank{R}.pt``
with its model's parameters after training.
"""

import os
from pathlib import Path
import sys

import torch


def main(argv) -> int:
    out, ckpt, root = Path(argv[0]), argv[1], argv[2]
    train_args = argv[argv.index('--') + 1:]
    torch.set_num_threads(1)
    from pu_ros import cli
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.inference.segmenter import load_segmentor
    import pu_ros.networks.segmentation as seg
    from pu_ros.training.distributed import init_distributed
    from pu_ros.training.eval_segmentation import evaluate

    rank = int(os.environ['RANK'])
    out.mkdir(parents=True, exist_ok=True)
    info = init_distributed('cpu')
    model, cfg, _ = load_segmentor(ckpt, torch.device('cpu'))
    val = SemanticKittiDataset([root], {'00': ['000000', '000001', '000002']}, cfg, train=False, use_image=False)
    res = evaluate(model, val, torch.device('cpu'), info=info, progress=False)
    if rank == 0:
        torch.save({'confusion': torch.from_numpy(res['confusion'].conf),
                    'confusion_full': torch.from_numpy(res['confusion_full'].conf),
                    'counters': {k: res[k] for k in ('points', 'in_range', 'out_of_range', 'frames')}},
                   out / 'dist_eval.pt')

    models = []

    class Recording(seg.Segmentor2DPASS):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            models.append(self)

    seg.Segmentor2DPASS = Recording  # train() imports the class when it runs
    code = cli.main(['train', 'segmentation', *train_args])
    if code == 0:
        torch.save({n: p.detach().clone() for n, p in models[-1].named_parameters()}, out / f'params_rank{rank}.pt')
    return code


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
