"""Shared fixtures. Real-data tests read ../shared/realdata (override with RPC_REALDATA).

Without that folder the real-data tests are skipped with a visible reason, unless RPC_REQUIRE_REALDATA=1
(set by .ci/run), which turns its absence into a failure.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("RPC_REALDATA", REPO.parent / "shared" / "realdata"))
# amp: auto's timings (rpc.utils.precision) go to a cache of this session, not the user's ~/.cache
os.environ.setdefault("RPC_CACHE_DIR", tempfile.mkdtemp(prefix="rpc_test_cache_"))
# every pretraining in the tests trains (resume and determinism tests need it); tests/test_corpus.py tests the cache
os.environ.setdefault("RPC_PRETRAIN_CACHE", "0")


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        if os.environ.get("RPC_REQUIRE_REALDATA") == "1":
            pytest.fail(f"real-data fixtures not found at {REALDATA}")
        pytest.skip(f"real-data fixtures not found at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def voc_root(realdata) -> Path:
    return realdata / "voc" / "VOCdevkit" / "VOC2012"


@pytest.fixture(scope="session")
def voc_index(voc_root, tmp_path_factory):
    from rpc.data.voc import prepare_voc

    return prepare_voc(voc_root, tmp_path_factory.mktemp("voc_prepared"))


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """A small synthetic dataset (VOC layout + prepared index), shared by tests that need real files."""
    from rpc.data.synthetic import SyntheticSpec, generate_dataset
    from rpc.data.voc import prepare_voc

    spec = SyntheticSpec(n_train=24, n_train_eval=12, n_val=8, size=96)
    raw = generate_dataset(spec, tmp_path_factory.mktemp("syn_raw"))
    return spec, raw, prepare_voc(raw, tmp_path_factory.mktemp("syn_prepared"), name="synthetic")


@pytest.fixture
def logs(caplog):
    """The stages' log lines (work folders, resumes, precision decisions) since the last ``read()``, as
    ``capsys.readouterr()`` gives printed output."""
    caplog.set_level(logging.INFO)

    class Reader:
        @staticmethod
        def read() -> str:
            text = caplog.text
            caplog.clear()
            return text

    return Reader()
