"""Small generated datasets for the job tests: intents as text (CSV/JSONL), and pictures of three
kinds of pattern in label folders (zip), each made from a fixed seed."""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile

import numpy as np
from PIL import Image, ImageDraw

INTENTS: dict[str, tuple[list[str], list[str]]] = {
    "weather": (["will it {} in {} tomorrow", "what is the forecast for {} in {}", "is it going to {} today in {}",
                 "should I expect {} this weekend in {}", "how likely is {} tonight in {}"],
                ["rain", "snow", "sunshine", "a storm", "wind", "fog"]),
    "billing": (["why was my card charged twice for {} {}", "I need a refund for the {} on my {} invoice",
                 "how do I update the payment method for {} {}", "my {} subscription bill for {} is wrong",
                 "can I get a receipt for the {} payment from {}"],
                ["the premium plan", "March", "my order", "the annual", "last month", "the family"]),
    "greeting": (["hello there, {} {}", "hi, good {} to you {}", "hey {}, how are you this {}",
                  "good {} {}, nice to meet you", "greetings {} and have a lovely {}"],
                 ["friend", "morning", "evening", "everyone", "team", "afternoon"]),
}
CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Perth", "Quito"]


def intent_rows(per_class: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for label, (templates, fillers) in INTENTS.items():
        for _ in range(per_class):
            template = rng.choice(templates)
            second = rng.choice(CITIES if label == "weather" else fillers)
            rows.append((template.format(rng.choice(fillers), second), label))
    rng.shuffle(rows)
    return rows


def intents_csv(per_class: int = 40, seed: int = 0) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(intent_rows(per_class, seed))
    return out.getvalue().encode()


def intents_jsonl(per_class: int = 40, seed: int = 0) -> bytes:
    return "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in intent_rows(per_class, seed)).encode()


def pattern_image(kind: str, rng: np.random.Generator, size: int = 96) -> bytes:
    background = tuple(int(v) for v in rng.integers(150, 256, 3))
    ink = tuple(int(v) for v in rng.integers(0, 100, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    if kind == "circles":
        for _ in range(int(rng.integers(3, 7))):
            cx, cy = (int(v) for v in rng.integers(10, size - 10, 2))
            r = int(rng.integers(6, 18))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=ink, width=3)
    elif kind == "stripes":
        step = int(rng.integers(8, 16))
        for x in range(int(rng.integers(0, step)), size, step):
            draw.rectangle((x, 0, x + step // 2, size), fill=ink)
    else:  # checks
        step = int(rng.integers(10, 20))
        for i in range(0, size, step):
            for j in range(0, size, step):
                if (i // step + j // step) % 2 == 0:
                    draw.rectangle((i, j, i + step - 1, j + step - 1), fill=ink)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def patterns_zip(per_class: int = 12, seed: int = 0, top: str | None = "patterns") -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for kind in ("circles", "stripes", "checks"):
            for i in range(per_class):
                name = f"{kind}/{i:03d}.jpg" if top is None else f"{top}/{kind}/{i:03d}.jpg"
                archive.writestr(name, pattern_image(kind, rng))
    return out.getvalue()


def batch_jsonl(lines: int, model: str = "smollm2:135m", endpoint: str = "/v1/chat/completions",
                max_tokens: int = 8) -> bytes:
    rows = []
    for i in range(lines):
        if endpoint == "/v1/embeddings":
            body = {"model": model, "input": f"sentence number {i}"}
        else:
            body = {"model": model, "messages": [{"role": "user", "content": f"Say the number {i}."}],
                    "max_tokens": max_tokens, "temperature": 0}
        rows.append(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": endpoint, "body": body}))
    return ("\n".join(rows) + "\n").encode()
