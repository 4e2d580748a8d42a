"""PU-Flow network: invertibility, log-determinant against a brute-force Jacobian, published-weights conversion."""

from conftest import SHARED_DATA
import pytest
import torch

from pu_ros.networks.upsampling import PUFlow, PUFlowConfig
from pu_ros.networks.upsampling.flow import standard_normal_logp
from pu_ros.networks.upsampling.weights import WeightsError, convert_published, load_puflow, published_to_ours

WEIGHTS = SHARED_DATA.parent / 'weights' / 'puflow'
TINY = PUFlowConfig(num_blocks=3, k=4, interp_k=4, max_ratio=8, hidden=8, feat_channels=(8, 8, 8),
                    growth=(4, 4, 4), cond_channels=(8, 8, 8))


def _jiggle(model, scale=0.3, seed=0):
    """Random non-zero values everywhere (the zero-initialised last layers would make the flow trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)
        for block in model.blocks:
            block.actnorm.initialized.fill_(1)
    return model.eval()


def _cloud(b, n, seed=0):
    x = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=-1).amax()


def test_architecture_matches_published_count():
    model = PUFlow()
    assert sum(p.numel() for p in model.parameters()) == 806_103
    assert len(model.blocks) == 6 and model.config.k == 16 and model.interp.k == 8 and model.interp.max_ratio == 32


def test_inverse_of_forward_is_identity():
    model = _jiggle(PUFlow())
    x = _cloud(2, 64)
    with torch.no_grad():
        conds = model.features(x)
        z, logdet = model.flow(x, conds)
        back = model.decode(z, conds)
    assert (z - x).abs().max() > 1e-2  # the flow is not trivially the identity
    assert torch.allclose(back, x, atol=1e-4)
    assert logdet.shape == (2,) and torch.isfinite(logdet).all()


def test_logdet_matches_brute_force_jacobian():
    torch.manual_seed(0)
    model = _jiggle(PUFlow(TINY).double(), scale=0.5)
    x = _cloud(1, 6, seed=1).double()
    conds = [c.detach() for c in model.features(x)]

    def f(flat):
        return model.flow(flat.view(1, 6, 3), conds)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))                 # (18, 18)
    _, logdet = model.flow(x, conds)
    assert torch.allclose(logdet[0], torch.linalg.slogdet(jac)[1], atol=1e-8)
    assert abs(float(logdet[0].detach())) > 0.1  # non-trivial


def test_log_prob_nll_and_upsample_shapes():
    model = _jiggle(PUFlow(TINY))
    x = _cloud(3, 20)
    z, logdet = model.encode(x)
    assert torch.allclose(model.log_prob(x), standard_normal_logp(z) + logdet)
    assert torch.allclose(model.nll(x), -(standard_normal_logp(z) + logdet).mean() / 20)
    dense, nll = model.upsample_with_nll(x, 5)
    assert dense.shape == (3, 100, 3) and nll.dim() == 0
    with pytest.raises(ValueError, match='ratio'):
        model.upsample(x, 9)


def test_interpolated_latents_are_convex_combinations_of_neighbours():
    model = _jiggle(PUFlow(TINY))
    x = _cloud(1, 20)
    idx = model.knn(x, 4)
    w = model.interp.weight_sets(x, idx, 3)
    assert w.shape == (1, 20, 3, 4) and torch.allclose(w.sum(-1), torch.ones(1, 20, 3)) and (w >= 0).all()
    z = torch.randn(1, 20, 3)
    zi = model.interp(z, x, idx, 3).view(1, 20, 3, 3)
    manual = torch.einsum('bnrk,bnkd->bnrd', w, z[0][idx[0]][None])
    assert torch.allclose(zi, manual, atol=1e-6)


def test_actnorm_data_dependent_init_and_training_step():
    model = PUFlow(TINY).train()
    x = _cloud(4, 32) * 3 + 1
    model.encode(x)
    assert all(int(b.actnorm.initialized) == 1 for b in model.blocks)
    y, _ = model.blocks[0].actnorm(x)
    assert torch.allclose(y.reshape(-1, 3).mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.reshape(-1, 3).std(0), torch.ones(3), atol=1e-4)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    dense, nll = model.upsample_with_nll(x, 2)
    (nll + dense.pow(2).mean()).backward()
    opt.step()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_decoder_ablation():
    cfg = PUFlowConfig(**{**TINY.to_dict(), 'decoder': 'mlp'})
    model = PUFlow(cfg)
    x = _cloud(2, 16)
    dense, nll = model.upsample_with_nll(x, 4)
    assert dense.shape == (2, 64, 3)
    dense.pow(2).mean().backward()
    assert model.mlp_decoder[0].weight.grad is not None
    with pytest.raises(ValueError, match='decoder'):
        PUFlowConfig(decoder='nope')


def test_rename_rules_cover_every_published_name():
    ours = PUFlow().state_dict()
    assert published_to_ours('feat_convs.3.convs.2.1.running_var') == 'features_units.3.layers.2.bn.running_var'
    assert published_to_ours('flow_blocks.5.coupling2.scale_net.layers.4.bias') == \
        'blocks.5.injector.log_scale_net.fc3.bias'
    assert published_to_ours('interp.knn_context.distance_encoder.mlp.6.weight') == 'interp.distance.out.weight'
    assert published_to_ours('flow_blocks.0.cnf.odefunc.x') is None
    for name in ('merges.2.fc1.weight', 'interp.weights.layer2.bn.running_mean', 'blocks.1.reverse.inv_perm'):
        assert name in ours


def test_wrong_state_dict_names_first_problem():
    with pytest.raises(WeightsError, match="unexpected tensor 'foo.bar'"):
        convert_published({'foo.bar': torch.zeros(1)})
    bad = {'flow_blocks.0.actnorm.logs': torch.zeros(1, 1, 4)}
    with pytest.raises(WeightsError, match=r"shape mismatch: published 'flow_blocks.0.actnorm.logs' \(1, 1, 4\)"):
        convert_published(bad)
    partial = {'flow_blocks.0.actnorm.logs': torch.zeros(1, 1, 3)}
    with pytest.raises(WeightsError, match='has no counterpart'):
        convert_published(partial)


def _published(name):
    path = WEIGHTS / f'puflow-x4-{name}.pt'
    if not path.is_file():
        pytest.skip(f'published weights not found at {path}')
    return path


@pytest.mark.data
@pytest.mark.parametrize('name', ['pu1k', 'pugan', 'pugeo'])
def test_published_weights_load_every_tensor(name):
    path = _published(name)
    raw = torch.load(path, map_location='cpu', weights_only=True)
    state = convert_published(raw)
    assert len(state) == len(PUFlow().state_dict())
    model, meta = load_puflow(path)
    assert meta['trained_ratio'] == 4
    x = _cloud(1, 256)
    with torch.no_grad():
        conds = model.features(x)
        z, _ = model.flow(x, conds)
        assert torch.allclose(model.decode(z, conds), x, atol=1e-4)
        dense = model.upsample(x, 4)
    assert dense.shape == (1, 1024, 3) and dense.norm(dim=-1).max() < 2.0
    # the published interpolation weights are trained: new points stay near the input (mean NN distance small)
    d = torch.cdist(dense[0], x[0]).min(1).values.mean()
    assert d < 0.1


@pytest.mark.data
def test_other_checkpoint_gives_clear_error(tmp_path):
    path = WEIGHTS / 'puflow-x4-cnf-pu1k.pt'
    if not path.is_file():
        pytest.skip(f'{path} not found')
    with pytest.raises(WeightsError, match=r"unexpected tensor 'flow_blocks\.0\.cnf\."):
        load_puflow(path)


@pytest.mark.data
def test_convert_weights_cli_round_trip(tmp_path, capsys):
    from pu_ros.cli import main

    src = _published('pugan')
    dst = tmp_path / 'converted.pt'
    assert main(['convert-weights', 'puflow', str(src), str(dst)]) == 0
    a, _ = load_puflow(src)
    b, meta = load_puflow(dst)
    assert meta['source'] == 'published'
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'not a checkpoint')
    assert main(['convert-weights', 'puflow', str(junk), str(tmp_path / 'x.pt')]) == 2
    assert main(['convert-weights', 'puflow', str(tmp_path / 'missing.pt'), str(tmp_path / 'x.pt')]) == 2
    err = capsys.readouterr().err
    assert 'junk.pt' in err and 'missing.pt' in err
