"""Camera-view comparison of the 3D and fused heads: same points in every column, fused only with a 2D branch."""

import numpy as np
import pytest
import torch

from pu_ros.networks.checkpoint import export_weights, load_checkpoint, save_checkpoint
from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS
from pu_ros.training.eval_camera import camera_confusions, format_table, main


@pytest.mark.slow
def test_camera_view_table(tiny_root, tmp_path, capsys):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = SegmentationConfig(hidden_size=8)
    full = save_checkpoint(tmp_path / 'full.pt', Segmentor2DPASS(cfg).state_dict(),
                           {'model': cfg.to_dict(), 'train': {}}, {'step': 0})
    only3d = export_weights(load_checkpoint(full), tmp_path / '3d.pt', keep=lambda k: k.startswith('backbone_3d.'),
                            meta_update={'branches': ['3d']})
    cms = camera_confusions([only3d, full], str(tiny_root), '00/000000', device='cpu', progress=False)
    assert list(cms) == ['3d.pt:3d', 'full.pt:3d', 'full.pt:fused']
    totals = {k: int(cm.conf.sum()) for k, cm in cms.items()}
    assert len(set(totals.values())) == 1 and 0 < totals['full.pt:3d']  # the same in-view points everywhere
    assert np.array_equal(cms['3d.pt:3d'].conf, cms['full.pt:3d'].conf)  # same 3D weights, same answer
    # fewer points than the whole scan: only those the camera sees
    n_scan = np.fromfile(tiny_root / 'sequences' / '00' / 'velodyne' / '000000.bin', np.float32).size // 4
    assert totals['full.pt:3d'] < n_scan
    table = format_table(cms, [str(i) for i in range(20)])
    assert table.count('\n') >= 3 and 'full.pt:fused' in table
    assert main(['--checkpoint', str(only3d), '--data', str(tiny_root), '--frames', '00/000000', '--no-progress',
                 '--device', 'cpu']) == 0
    assert '3d.pt:3d' in capsys.readouterr().out


@pytest.mark.slow
def test_bn_recalibration_reaches_the_2d_branch(tiny_root):
    """Precise-BN after fused training re-estimates the 2D branch from scans with images, never wipes it."""
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.training.train_segmentation import recalibrate_batchnorm

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = SegmentationConfig(hidden_size=8)
    model = Segmentor2DPASS(cfg)
    bn2d = model.backbone_2d.stem[1]
    with torch.no_grad():
        bn2d.running_mean.fill_(3.0)
    no_image = SemanticKittiDataset(str(tiny_root), '00/000000', cfg, train=False, use_image=False)
    assert recalibrate_batchnorm(model, no_image, 'cpu', 1) > 0
    assert torch.all(bn2d.running_mean == 3.0)  # not reached: kept as it was, not reset to 0
    with_image = SemanticKittiDataset(str(tiny_root), '00/000000', cfg, train=False)
    recalibrate_batchnorm(model, with_image, 'cpu', 1)
    assert int(bn2d.num_batches_tracked) == 1 and not torch.all(bn2d.running_mean == 3.0)
