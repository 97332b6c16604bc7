"""PyTorch state_dict checkpoints: torch.load(weights_only=True) into a known architecture."""

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.graph import graphs_equal
from fpxint_hw.io.torch_state import load_state_dict
from fpxint_hw.models import build_model

torch = pytest.importorskip("torch", reason="reading .pth checkpoints needs torch")


def test_state_dict_round_trip_into_resnet18(tmp_path):
    g = build_model("resnet18", fold_bn=False)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in g.params.items()}
    for k in [k for k in g.params if k.endswith("running_var")]:
        sd[k.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    torch.save(sd, tmp_path / "r18.pth")
    back = build_model("resnet18", weights=tmp_path / "r18.pth", fold_bn=False)
    assert graphs_equal(g, back)


def test_wrapped_and_data_parallel_checkpoints(tmp_path):
    g = build_model("mnist-resnet", fold_bn=False)
    sd = {f"module.{k}": torch.from_numpy(np.array(v)) for k, v in g.params.items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    assert graphs_equal(g, build_model("mnist-resnet", weights=tmp_path / "wrapped.pth",
                                       fold_bn=False))


def test_wrong_shape_in_a_pth_names_file_parameter_and_shapes(tmp_path):
    g = build_model("mnist-resnet", fold_bn=False)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in g.params.items()}
    sd["fc.weight"] = torch.zeros(10, 32)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(InputError) as e:
        build_model("mnist-resnet", weights=tmp_path / "bad.pth")
    msg = str(e.value)
    assert "bad.pth" in msg and "'fc.weight'" in msg and "(10, 32)" in msg and "(10, 64)" in msg


def test_not_a_checkpoint_and_pickled_code_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01 not a checkpoint" * 10)
    with pytest.raises(InputError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_state_dict(junk)
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"w": Evil()}, f, protocol=2)
    with pytest.raises(InputError, match="evil.pth"):
        load_state_dict(evil)
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(InputError, match="holds a list"):
        load_state_dict(tmp_path / "list.pth")
