"""Vision, audio and images pages in a real browser against a `deskml serve` subprocess with the real
bundled models: a photo of a cat gets a cat class, a street photo gets a box and its caption read,
a file that is no picture gets the server's own error; spoken WAV becomes a timed transcript and text
becomes playable speech; an image generates with live progress and a photo is stylized."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.conftest import ServerProcess
from tests.ui.conftest import shot, wait_js

pytestmark = pytest.mark.e2e


def chelsea(path: Path) -> Path:
    from skimage import data

    Image.fromarray(data.chelsea()).save(path, "JPEG", quality=92)
    return path


def street(path: Path) -> Path:
    """scikit-image's motorcycle photo with a caption painted in a corner: something to detect and text to read."""
    from skimage import data
    from skimage import io as skio

    photo = Image.fromarray(skio.imread(Path(data.__file__).parent / "motorcycle_left.png")[:, :, :3])
    draw = ImageDraw.Draw(photo)
    draw.rectangle((20, 440, 420, 490), fill="white")
    draw.text((30, 446), "DESKML VISION 2026", fill="black", font=ImageFont.load_default(size=34))
    photo.save(path, "JPEG", quality=92)
    return path


def test_vision_photo_shows_classes_boxes_and_text(ui_server: ServerProcess, new_page: Any, tmp_path: Path) -> None:
    page, errors = new_page()
    page.goto(ui_server.url + "/ui/#/vision")
    page.set_input_files("#vision-file", str(chelsea(tmp_path / "chelsea.jpg")))
    bars = page.locator(".bars .bar-row")
    bars.first.wait_for(timeout=120_000)
    assert bars.count() == 5
    top = page.locator(".bars .bar-label").first.inner_text()
    assert "cat" in top.lower(), top
    share = float(page.locator(".bars .bar-value").first.inner_text().rstrip("%"))
    assert 10 < share <= 100
    wait_js(page, "!document.querySelector('.vision-detect .spinner, .vision-ocr .spinner')", timeout=120)

    page.set_input_files("#vision-file", str(street(tmp_path / "street.jpg")))
    page.locator(".detections li").first.wait_for(timeout=120_000)
    labels = page.locator(".detections li").all_inner_texts()
    assert any("motorbike" in label for label in labels), labels
    page.locator(".ocr-lines li").first.wait_for(timeout=120_000)
    read = " ".join(page.locator(".ocr-lines li").all_inner_texts()).upper()
    assert "DESKML" in read and "2026" in read
    # the boxes are drawn on the photo: the canvas holds the picture at its size, not a blank
    drawn = page.evaluate("""() => {
      const c = document.querySelector('.vision-canvas');
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let coloured = 0;
      for (let i = 0; i < px.length; i += 4 * 97) if (px[i] + px[i + 1] + px[i + 2] > 30) coloured += 1;
      return {w: c.width, h: c.height, coloured};
    }""")
    assert drawn["w"] > 300 and drawn["h"] > 200 and drawn["coloured"] > 100
    wait_js(page, "!document.querySelector('.vision-classes .spinner')", timeout=120)
    shot(page, "vision", full_page=True)

    # not a picture: the server's own words, no spinner left behind
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    page.set_input_files("#vision-file", str(junk))
    error = page.locator(".vision-classes .error-box")
    error.wait_for(timeout=60_000)
    assert "HTTP 400" in error.inner_text() and "image" in error.inner_text().lower()
    for section in (".vision-detect", ".vision-ocr"):
        page.locator(f"{section} .error-box").wait_for(timeout=60_000)
    assert errors.unexpected("Failed to load resource") == []


def test_audio_upload_gives_a_timed_transcript_and_text_is_spoken(ui_server: ServerProcess, new_page: Any,
                                                                   tmp_path: Path) -> None:
    from tests.media.conftest import espeak

    wav = tmp_path / "speech.wav"
    wav.write_bytes(espeak("We will meet at the coffee shop next to the train station on Monday. "
                           "The weather today is sunny and warm with a light wind from the west."))
    page, errors = new_page()
    page.goto(ui_server.url + "/ui/#/audio")
    page.set_input_files("#audio-file", str(wav))
    text = page.locator(".transcript-text")
    text.wait_for(timeout=120_000)
    words = text.inner_text().lower()
    assert "coffee shop" in words and "train station" in words and "weather" in words
    times = page.locator(".segments tbody tr td:first-child").all_inner_texts()
    assert times and all(" → " in t for t in times)  # 00:00.0 → 00:04.6
    assert times[0].startswith("00:00")
    assert wait_js(page, "document.querySelector('audio.player').duration > 2")

    page.get_by_label("Text", exact=True).fill("Good morning. The transcript is ready.")
    page.get_by_role("button", name="Speak").click()
    spoken = page.locator("form audio.player")
    spoken.wait_for(timeout=120_000)
    assert wait_js(page, "document.querySelector('form audio.player').duration > 1")
    assert "s of audio" in page.locator("form").last.inner_text()
    shot(page, "audio")
    assert errors.unexpected() == []


def test_images_generate_with_progress_and_stylize(ui_server: ServerProcess, new_page: Any, tmp_path: Path) -> None:
    page, errors = new_page()
    page.goto(ui_server.url + "/ui/#/images")
    wait_js(page, "document.querySelector('select')?.value === 'tiny-sd:latest'")
    page.evaluate("""() => {
      window.__steps = [];
      new MutationObserver(() => window.__steps.push(document.querySelector('.progress-label').textContent))
        .observe(document.querySelector('.progress-label'), {childList: true, characterData: true, subtree: true});
    }""")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dawn")
    page.get_by_label("Width").fill("64")
    page.get_by_label("Height").fill("64")
    page.get_by_label("Steps").fill("6")
    page.get_by_role("button", name="Generate").click()
    image = page.locator(".gallery img").first
    image.wait_for(timeout=120_000)
    assert page.get_by_role("progressbar", name="Image generation progress").get_attribute("aria-valuenow") == "100"
    steps = page.evaluate("window.__steps")
    assert "step 3 / 6" in steps and "step 6 / 6" in steps, steps
    assert wait_js(page, "document.querySelector('.gallery img').naturalWidth") == 64

    photo = tmp_path / "cat.jpg"
    chelsea(photo)
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    page.get_by_role("button", name="Stylize").click()
    after = page.locator(".before-after img").nth(1)
    after.wait_for(timeout=120_000)
    assert wait_js(page, "document.querySelectorAll('.before-after img')[1].naturalWidth") == 451  # the input's size
    shot(page, "images", full_page=True)
    assert errors.unexpected() == []

