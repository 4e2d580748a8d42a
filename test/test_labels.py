"""SemanticKITTI label map: YAML contents, vectorised mapping, unknown ids, bad files, real labels."""

import warnings

import numpy as np
import pytest
import yaml

from pu_ros.data.kitti import read_labels
from pu_ros.data.labels import LabelMap, LabelMapError, UnknownLabelWarning
from pu_ros.resources import config_path


@pytest.fixture(scope='module')
def lmap():
    return LabelMap.load()


def test_default_map_shape(lmap):
    assert lmap.num_classes == 20
    assert lmap.ignore_index == 0
    assert len(lmap.names) == 20
    assert lmap.names[0] == 'unlabeled' and lmap.names[1] == 'car' and lmap.names[19] == 'traffic-sign'
    assert lmap.colors.shape == (20, 3) and lmap.colors.dtype == np.uint8
    assert len({tuple(c) for c in lmap.colors[1:]}) >= 18  # classes are told apart by colour
    # every named raw class has a learning id
    assert set(lmap.raw_names) == set(lmap.learning_map)


@pytest.mark.parametrize(
    ('raw', 'learning'),
    [
        (0, 0), (1, 0), (10, 1), (11, 2), (13, 5), (15, 3), (16, 5), (18, 4), (20, 5), (30, 6), (31, 7), (32, 8),
        (40, 9), (44, 10), (48, 11), (49, 12), (50, 13), (51, 14), (52, 0), (60, 9), (70, 15), (71, 16),
        (72, 17), (80, 18), (81, 19), (99, 0), (252, 1), (253, 7), (254, 6), (255, 8), (256, 5), (257, 5),
        (258, 4), (259, 5),
    ],
)
def test_benchmark_mapping(lmap, raw, learning):
    assert lmap.to_learning(np.array([raw], dtype=np.uint32))[0] == learning


def test_instance_bits_are_ignored(lmap):
    raw = (np.array([0, 7, 65535], dtype=np.uint32) << 16) | np.array([10, 40, 252], dtype=np.uint32)
    out = lmap.to_learning(raw)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [1, 9, 1])


def test_round_trip_learning_raw(lmap):
    learning = np.arange(20, dtype=np.uint8)
    raw = lmap.to_raw(learning)
    assert raw.dtype == np.uint32
    np.testing.assert_array_equal(lmap.to_learning(raw), learning)
    assert raw[1] == 10 and raw[9] == 40 and raw[13] == 50


def test_unknown_ids_map_to_ignore_with_counted_warning(lmap):
    before = lmap.unknown_points
    raw = np.array([10, 7, 7, 1000, 40], dtype=np.uint32)
    with pytest.warns(UnknownLabelWarning, match=r'3 point\(s\).*7, 1000'):
        out = lmap.to_learning(raw)
    np.testing.assert_array_equal(out, [1, 0, 0, 0, 9])
    assert lmap.unknown_points - before == 3


def test_colorize_and_histogram(lmap):
    learning = np.array([0, 1, 9, 9], dtype=np.uint8)
    colors = lmap.colorize(learning)
    assert colors.shape == (4, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(colors[2], lmap.colors[9])
    assert lmap.histogram(learning) == {'unlabeled': 1, 'car': 1, 'road': 2}


def test_bad_inputs(lmap):
    with pytest.raises(ValueError, match='integer'):
        lmap.to_learning(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match='non-negative'):
        lmap.to_learning(np.array([-1, 10]))
    with pytest.raises(ValueError, match='0..19'):
        lmap.to_raw(np.array([20]))
    with pytest.raises(ValueError, match='0..19'):
        lmap.colorize(np.array([-1]))


def _default_config():
    return yaml.safe_load(config_path('semantic_kitti.yaml').read_text())


def test_bad_yaml_files(tmp_path):
    with pytest.raises(LabelMapError, match='cannot read'):
        LabelMap.load(tmp_path / 'missing.yaml')
    broken = tmp_path / 'broken.yaml'
    broken.write_text('learning_map: {10: [\n')
    with pytest.raises(LabelMapError, match='not valid YAML'):
        LabelMap.load(broken)
    cfg = _default_config()
    del cfg['learning_map_inv']
    with pytest.raises(LabelMapError, match='learning_map_inv'):
        LabelMap(cfg)
    cfg = _default_config()
    cfg['learning_map_inv'][1] = 40  # 40 is road, not car
    with pytest.raises(LabelMapError, match=r'learning_map_inv\[1\]'):
        LabelMap(cfg)
    cfg = _default_config()
    cfg['learning_map'][10] = 25
    with pytest.raises(LabelMapError, match='out of range'):
        LabelMap(cfg)
    cfg = _default_config()
    cfg['learning_colors_rgb'] = cfg['learning_colors_rgb'][:-1]
    with pytest.raises(LabelMapError, match='RGB'):
        LabelMap(cfg)


@pytest.mark.data
def test_real_labels_histogram(lmap, seq00):
    raw = read_labels(seq00 / 'labels' / '000000.label')
    with warnings.catch_warnings():
        warnings.simplefilter('error', UnknownLabelWarning)  # every id in the real file is known
        learning = lmap.to_learning(raw)
    assert learning.shape == raw.shape
    hist = lmap.histogram(learning)
    for name in ('road', 'building', 'vegetation', 'car', 'sidewalk'):
        assert hist.get(name, 0) > 1000, (name, hist)
    assert hist.get('unlabeled', 0) / raw.size < 0.1
    # the moving-object ids fold into their static classes: learning ids only come from the 20-class range
    assert learning.max() < 20
