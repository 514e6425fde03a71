"""The shipped configs cannot rot: every file in configs/ loads through its room's one config
loader (an unknown key or a wrong type would be an error), and the paper-size ones build the
paper's networks (on the meta device: shapes and sizes only, no memory, no training)."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def _load(path):
    name = path.stem
    if name.startswith("expression_"):
        from affectlens.expression.recipe import load_train_config
        return load_train_config(path)
    if name.startswith("group_"):
        from affectlens.group.recipe import load_config
        return load_config(path)
    if name.startswith("privacy_attributes_"):
        from affectlens.config import load_config
        from affectlens.privacy.attributes import AttributeTrainConfig
        return load_config(AttributeTrainConfig, path)
    if name.startswith("privacy_reconstruct_"):
        from affectlens.config import load_config
        from affectlens.privacy.reconstruct import ReconTrainConfig
        return load_config(ReconTrainConfig, path)
    if name.startswith("spontaneity_"):
        from affectlens.spontaneity.recipe import load_cv_config
        return load_cv_config(path)
    if name.startswith("videotag_"):
        from affectlens.videotag.recipe import load_config
        return load_config(path)
    raise AssertionError(f"{path.name}: no room owns this config (name it <room>_*.yaml)")


def test_there_are_configs():
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert _load(path) is not None


def _params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def test_paper_configs_build_the_papers_networks():
    from affectlens.group.model import GroupEmotionNet
    from affectlens.privacy.model import AttributeConfig, AttributeNet, ReconConfig, ReconNet
    from affectlens.spontaneity.model import SpontaneityNet, table_configs
    from affectlens.videotag import models as VM
    from affectlens.videotag.recipe import _model_config

    with torch.device("meta"):
        group = _load(REPO / "configs" / "group_paper.yaml").model_config()
        net = GroupEmotionNet(group)
        assert (group.vit_name, group.d_model, group.n_heads, group.ff_dim) == ("vit_large_patch14_clip_224", 1024, 4, 2048)
        assert 300e6 < _params(net) < 350e6 and isinstance(net.video_proj, torch.nn.Linear)  # ViT-L + the custom layer

        att = _load(REPO / "configs" / "privacy_attributes_paper.yaml")
        attn = AttributeNet(AttributeConfig(backbone=att.backbone, widths=att.widths, image_hw=att.image_hw))
        assert att.backbone == "resnet50" and tuple(att.image_hw) == (218, 178) and 23e6 < _params(attn) < 25e6

        rec = _load(REPO / "configs" / "privacy_reconstruct_paper.yaml")
        recn = ReconNet(ReconConfig(widths=rec.widths))
        assert tuple(rec.widths) == (64, 128, 256, 512, 1024) and 30e6 < _params(recn) < 50e6 and rec.lr == 2e-5

        sp = _load(REPO / "configs" / "spontaneity_ustc_nvie_10fold.yaml")
        nets = [SpontaneityNet(c) for c in table_configs(sp.size)]
        assert sp.size == "paper" and (sp.protocol, sp.folds) == ("kfold", 10) and len(nets) == 7

        vt = _load(REPO / "configs" / "videotag_moe_a.yaml")
        moe = VM.build_model(_model_config(vt, 1152, 3862))
        assert isinstance(moe, VM.MoEModel) and moe.config.num_experts == 8
        paper_cnn = VM.TextCNN(VM.textcnn_paper(vocab_size=10, num_classes=3862))
        assert len(paper_cnn.convs) == 8 and paper_cnn.hidden.out_features == 4096

        from affectlens.expression.model import build_model
        ex = _load(REPO / "configs" / "expression_paper.yaml")
        net = build_model(ex.model_config())
        assert (ex.batch_size, ex.epochs, ex.weight_decay, ex.variant) == (64, 100, 0.0, "cnn_bilstm") and _params(net) > 1e6
