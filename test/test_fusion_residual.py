"""``fusion: residual`` (fused head starts as the 3D head) and ``train.freeze`` (frozen 3D branch) (CPU, tiny data)."""

import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('spconv')
pytest.importorskip('torchvision')

from test_segmentation_network import make_batch  # noqa: E402

from pu_ros import cli  # noqa: E402
from pu_ros.networks.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from pu_ros.networks.losses import SegmentationLoss  # noqa: E402
from pu_ros.networks.segmentation import SegmentationConfig, SegmentationConfigError, Segmentor2DPASS  # noqa: E402
from pu_ros.training.common import TrainConfigError, build_optimizer  # noqa: E402
from pu_ros.training.freeze import freeze_modules  # noqa: E402


def residual_model(**kw):
    base = dict(hidden_size=8, scale_list=(2, 4, 8, 16), use_image=True, fusion='residual')
    base.update(kw)
    return Segmentor2DPASS(SegmentationConfig(**base))


def test_config_fusion_values():
    assert SegmentationConfig().fusion == '2dpass'
    assert SegmentationConfig.from_dict({'hidden_size': 8}).fusion == '2dpass'  # checkpoints from before the key
    with pytest.raises(SegmentationConfigError, match='fusion'):
        SegmentationConfig(fusion='late')


def test_residual_fusion_starts_as_the_3d_head_then_learns():
    torch.manual_seed(0)
    model = residual_model()
    batch = make_batch(image_hw=(32, 48))
    model.train()
    out = model(batch)
    # in train mode too: the fused head sees f3d exactly and is a copy of the 3D classifier
    torch.testing.assert_close(out['logits_fused'], out['logits'][batch['pix_point_idx']], rtol=0, atol=0)
    torch.testing.assert_close(model.predict(batch, fused=True), model.predict(batch), rtol=0, atol=0)
    loss = SegmentationLoss(model.cfg)(out, batch)
    loss['total'].backward()
    for i, fusion in enumerate(model.fusion):  # the zero-initialised residual still gets a gradient
        assert float(fusion.residual.weight.grad.abs().sum()) > 0, i
    assert float(model.backbone_2d.stem[0].weight.grad.abs().sum()) > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.step()
    after = model.predict(batch, fused=True)[batch['pix_point_idx']]
    assert not torch.allclose(after, model.predict(batch)[batch['pix_point_idx']])
    # the paper's anchoring is not a copy of the 3D head
    paper = residual_model(fusion='2dpass')
    assert not paper.copy_3d_classifier_to_fused()
    out = paper.eval()(batch)
    assert not torch.allclose(out['logits_fused'], out['logits'][batch['pix_point_idx']])


def test_freeze_modules_keeps_weights_and_statistics():
    torch.manual_seed(0)
    model = residual_model()
    before = {k: v.clone() for k, v in model.backbone_3d.state_dict().items()}
    n = freeze_modules(model, ['backbone_3d'])
    assert n == sum(p.numel() for p in model.backbone_3d.parameters()) > 0
    opt = build_optimizer(model, {'weight_decay': 0.01, 'optimizer': 'adamw', 'lr': 0.01, 'betas': [0.9, 0.999]})
    assert sum(p.numel() for g in opt.param_groups for p in g['params']) == \
        sum(p.numel() for p in model.parameters()) - n
    model.train()
    batch = make_batch(image_hw=(32, 48))
    for _ in range(2):
        out = model(batch, aux_3d=False)
        SegmentationLoss(model.cfg)(out, batch)['total'].backward()
        opt.step()
        opt.zero_grad()
    assert not model.backbone_3d.training and model.backbone_2d.training  # the hook re-applies eval mode
    for k, v in model.backbone_3d.state_dict().items():  # weights and BatchNorm statistics untouched
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)
    with pytest.raises(TrainConfigError, match='not a submodule'):
        freeze_modules(model, ['backbone_4d'])


@pytest.mark.slow
def test_train_cli_residual_fusion_on_frozen_3d_branch(tiny_root, tmp_path):
    """init_from a 3D-only checkpoint + freeze: the 3D branch is bit-identical afterwards, the fused head moved."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg3d = SegmentationConfig(hidden_size=8, use_image=False)
    src = Segmentor2DPASS(cfg3d).state_dict()
    init = save_checkpoint(tmp_path / 'init3d.pt', src, {'model': cfg3d.to_dict(), 'train': {}}, {'branches': ['3d']})
    split = "train.split={train: {'00': ['000000', '000001']}}"
    recal = "train.bn_recalibration={split: {'00': ['000000']}, scans: 1}"
    args = ['train', 'segmentation', '--data', str(tiny_root), '--out', str(tmp_path / 'run'), '--max-steps', '2',
            '--device', 'cpu', '--no-progress', '--set', 'model.hidden_size=8', '--set', 'model.fusion=residual',
            '--set', 'model.image_size=[64,128]', '--set', 'train.batch_size=1', '--set', 'train.num_workers=0',
            '--set', 'train.optimizer=adamw', '--set', 'train.lr=0.01', '--set', 'train.warmup_steps=0',
            '--set', 'train.freeze=[backbone_3d]', '--set', f'train.init_from={init}', '--set', split,
            '--set', recal]
    assert cli.main(args) == 0
    state = load_checkpoint(tmp_path / 'run' / 'last.pt')['state_dict']
    for k, v in src.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0, msg=k)
    assert not torch.equal(state['head_fused.2.weight'], src['backbone_3d.classifier.2.weight'])
    assert float(state['fusion.0.residual.weight'].abs().sum()) > 0
    assert cli.main(args[:-2] + ['--set', 'train.freeze=[backbone_9d]']) == 2
