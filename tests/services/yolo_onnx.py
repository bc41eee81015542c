"""Turn the bundled Darknet YOLOv3-tiny into a YOLOv5-style ONNX file, to test the user-ONNX path
of the detector with a real model.

The network is rebuilt in PyTorch from the .cfg (convolution + batch norm + leaky ReLU, max pool,
route, upsample, YOLO heads), the .weights are read in Darknet's order, and the export emits one
[1, N, 85] output: centre x, centre y, width, height in input pixels, objectness, 80 class
probabilities, as Ultralytics' YOLOv5 exports do.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 416


def _blocks(cfg: Path) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for raw in cfg.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("["):
            blocks.append({"type": line[1:-1]})
        else:
            key, value = line.split("=", 1)
            blocks[-1][key.strip()] = value.strip()
    return blocks


class DarknetYolo(torch.nn.Module):
    def __init__(self, cfg: Path, weights: Path) -> None:
        super().__init__()
        self.blocks = _blocks(cfg)[1:]
        values = np.fromfile(weights, dtype=np.float32)[5:]  # header: 3 int32 + one int64 "seen"
        at, channels, widths = 0, 3, []
        self.convs = torch.nn.ModuleList()
        for block in self.blocks:
            if block["type"] == "convolutional":
                filters, k = int(block["filters"]), int(block["size"])
                bn = int(block.get("batch_normalize", 0))
                conv = torch.nn.Conv2d(channels, filters, k, int(block["stride"]), (k - 1) // 2, bias=not bn)
                seq: list[torch.nn.Module] = [conv]
                if bn:
                    norm = torch.nn.BatchNorm2d(filters, eps=1e-5)
                    for param in (norm.bias, norm.weight, norm.running_mean, norm.running_var):
                        param.data = torch.from_numpy(values[at : at + filters].copy())
                        at += filters
                    seq.append(norm)
                else:
                    conv.bias.data = torch.from_numpy(values[at : at + filters].copy())
                    at += filters
                count = filters * channels * k * k
                conv.weight.data = torch.from_numpy(values[at : at + count].reshape(filters, channels, k, k).copy())
                at += count
                if block["activation"] == "leaky":
                    seq.append(torch.nn.LeakyReLU(0.1))
                self.convs.append(torch.nn.Sequential(*seq))
                channels = filters
            elif block["type"] == "route":
                here = len(widths)
                channels = sum(widths[i if i >= 0 else here + i] for i in map(int, block["layers"].split(",")))
            widths.append(channels)
        if at != len(values):
            raise ValueError(f"read {at} of {len(values)} weights")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, heads, conv = [], [], 0
        for i, block in enumerate(self.blocks):
            kind = block["type"]
            if kind == "convolutional":
                x = self.convs[conv](x)
                conv += 1
            elif kind == "maxpool":
                if int(block["stride"]) == 1:  # Darknet pads right/bottom to keep the size
                    x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)
                else:
                    x = F.max_pool2d(x, int(block["size"]), int(block["stride"]))
            elif kind == "upsample":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            elif kind == "route":
                x = torch.cat([outputs[j if j >= 0 else i + j] for j in map(int, block["layers"].split(","))], 1)
            elif kind == "yolo":
                heads.append(self._decode(x, block))
            outputs.append(x)
        return torch.cat(heads, 1)

    @staticmethod
    def _decode(x: torch.Tensor, block: dict[str, str]) -> torch.Tensor:
        anchors = [int(v) for v in block["anchors"].split(",")]
        mask = [int(v) for v in block["mask"].split(",")]
        pairs = torch.tensor([[anchors[2 * m], anchors[2 * m + 1]] for m in mask], dtype=torch.float32)
        batch, _, h, w = x.shape
        y = x.view(batch, 3, 85, h, w).permute(0, 1, 3, 4, 2)
        gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cx = (torch.sigmoid(y[..., 0]) + gx) * (SIZE / w)
        cy = (torch.sigmoid(y[..., 1]) + gy) * (SIZE / h)
        bw = torch.exp(y[..., 2]) * pairs[:, 0].view(1, 3, 1, 1)
        bh = torch.exp(y[..., 3]) * pairs[:, 1].view(1, 3, 1, 1)
        rest = torch.sigmoid(y[..., 4:])
        return torch.cat([cx[..., None], cy[..., None], bw[..., None], bh[..., None], rest], -1).reshape(batch, -1, 85)


def export(folder: Path, out: Path) -> Path:
    model = DarknetYolo(folder / "yolov3-tiny.cfg", folder / "yolov3-tiny.weights").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), str(out), input_names=["images"],
                          output_names=["output0"], opset_version=17, dynamo=False)
    return out
