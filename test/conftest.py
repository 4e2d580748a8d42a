"""Shared test set-up: ROS traffic stays on loopback in a domain of its own; markers skip with a reason."""

import importlib.util
import os
from pathlib import Path
import signal
import warnings

from procs import remove_stale_fastdds_segments
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('PU_ROS_SHARED_DATA', ROOT.parent / 'shared' / 'data'))
SEQ00 = SHARED_DATA / 'semantickitti' / 'sequences' / '00'

# Loopback only, a per-run domain (so parallel runs on one machine never meet), and the big-SHM profile.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(ROOT / 'config' / 'fastdds_profile.xml'))
os.environ.pop('ROS_LOCALHOST_ONLY', None)

HAVE_RCLPY = importlib.util.find_spec('rclpy') is not None

# Tests stop their subprocesses with SIGINT. A shell that starts a job in the background (`make test &`) makes it
# ignore SIGINT, and that disposition is inherited across exec by every process the tests start; Python's own
# handler in this process is reset to the default in children, so they act on Ctrl-C again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _have_cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_ros = pytest.mark.skip(reason='rclpy is not importable (install the ROS 2 wheels or source ROS 2)')
    skip_data = pytest.mark.skip(reason=f'real data not found at {SHARED_DATA} (set PU_ROS_SHARED_DATA)')
    skip_gpu = pytest.mark.skip(reason='no CUDA device')
    have_data = SEQ00.is_dir()
    have_gpu = None
    for item in items:
        if 'ros' in item.keywords and not HAVE_RCLPY:
            item.add_marker(skip_ros)
        if 'data' in item.keywords and not have_data:
            item.add_marker(skip_data)
        if 'gpu' in item.keywords:
            if have_gpu is None:
                have_gpu = _have_cuda()
            if not have_gpu and not os.environ.get('PU_ROS_GPU_DRY_RUN'):  # dry run: see test/test_gpu.py
                item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _fastdds_shm_guard(request):
    """Before a DDS test: remove Fast DDS segments left uninitialised by a killed process (see test/procs.py)."""
    if request.node.get_closest_marker('ros') is not None:
        removed = remove_stale_fastdds_segments()
        if removed:
            warnings.warn(f'removed uninitialised Fast DDS shared memory left by a killed process: {removed}',
                          stacklevel=1)
    yield


@pytest.fixture(scope='session')
def seq00():
    """Path of the real SemanticKITTI sequence 00 excerpt (skips when absent)."""
    if not SEQ00.is_dir():
        pytest.skip(f'real data not found at {SEQ00}')
    return SEQ00


@pytest.fixture(scope='session')
def shared_data():
    """Path of ../shared/data (skips when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f'real data not found at {SHARED_DATA}')
    return SHARED_DATA


@pytest.fixture(scope='session')
def tiny_root(tmp_path_factory):
    """A small synthetic SemanticKITTI-layout root: ROOT/sequences/00 with 3 frames (16 beams, 800x256 images)."""
    from pu_ros.data.synthetic import SceneConfig, write_sequence

    root = tmp_path_factory.mktemp('tiny_kitti')
    write_sequence(root / 'sequences' / '00', SceneConfig(seed=3, n_frames=3, n_beams=16, n_azimuth=512,
                                                          image_width=800, image_height=256), progress=False)
    return root
