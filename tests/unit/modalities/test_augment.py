"""The training-view augmentations: what a view of an emoji picture or caption may and may not change."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmops.modalities.image_augment import augment_image
from mmops.modalities.text_augment import augment_text

IMAGES = Path(__file__).resolve().parents[3] / "data" / "images"
SEEDS = range(12)
CAPTION = "man police officer; male-police-officer"


@pytest.fixture(scope="module")
def grinning() -> Image.Image:
    return Image.open(IMAGES / "1f600.png").convert("RGBA")


@pytest.fixture(scope="module")
def dog() -> Image.Image:
    return Image.open(IMAGES / "1f436.png").convert("RGBA")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def opaque_square(size: int = 48, colour: tuple[int, int, int] = (200, 40, 40)) -> Image.Image:
    return Image.new("RGBA", (size, size), (*colour, 255))


# Images


def test_strength_zero_returns_the_image_unchanged(grinning: Image.Image) -> None:
    view = augment_image(grinning, 0.0, seed=7)
    assert view is not grinning
    assert np.array_equal(pixels(view), pixels(grinning))


def test_the_output_keeps_the_size_and_is_rgba(dog: Image.Image) -> None:
    for image in (dog, Image.new("RGBA", (40, 24), (10, 200, 30, 255))):
        view = augment_image(image, 1.0, seed=3)
        assert (view.mode, view.size) == ("RGBA", image.size)


@pytest.mark.parametrize("mode", ["LA", "RGB", "L", "P"])
def test_other_modes_come_back_as_rgba_of_the_same_size(dog: Image.Image, mode: str) -> None:
    image = dog.convert(mode)
    for strength in (0.0, 1.0):
        view = augment_image(image, strength, seed=5)
        assert (view.mode, view.size) == ("RGBA", image.size)


def test_the_same_seed_gives_the_same_pixels(dog: Image.Image) -> None:
    first = augment_image(dog, 1.0, seed=11)
    torch.manual_seed(999)  # whatever the global state, the view depends on the seed only
    random.seed(999)
    assert np.array_equal(pixels(augment_image(dog, 1.0, seed=11)), pixels(first))


def test_different_seeds_give_different_views(dog: Image.Image) -> None:
    views = {pixels(augment_image(dog, 1.0, seed)).tobytes() for seed in SEEDS}
    assert len(views) >= len(SEEDS) - 2


def test_a_positive_strength_changes_the_image(grinning: Image.Image) -> None:
    changed = [not np.array_equal(pixels(augment_image(grinning, 1.0, seed)), pixels(grinning)) for seed in SEEDS]
    assert sum(changed) >= len(SEEDS) * 3 // 4


def test_a_higher_strength_changes_the_image_more(dog: Image.Image) -> None:
    def mean_change(strength: float) -> float:
        changes = [np.abs(pixels(augment_image(dog, strength, seed)) - pixels(dog)).mean() for seed in SEEDS]
        return float(np.mean(changes))

    assert mean_change(0.1) < mean_change(1.0)


def test_the_global_torch_rng_is_left_as_it_was(dog: Image.Image) -> None:
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    augment_image(dog, 1.0, seed=42)
    assert torch.equal(torch.rand(3), expected[0])
    assert (random.random(), np.random.rand()) == expected[1:]


def test_strength_outside_zero_to_one_is_refused(dog: Image.Image) -> None:
    for strength in (-0.1, 1.5):
        with pytest.raises(ValueError, match="strength"):
            augment_image(dog, strength, seed=0)


def test_a_rotated_image_fills_its_corners_with_transparency_not_black() -> None:
    square = opaque_square()
    corners = [(0, 0), (0, -1), (-1, 0), (-1, -1)]
    alphas = []
    for seed in SEEDS:
        view = pixels(augment_image(square, 1.0, seed))
        for y, x in corners:
            r, g, b, a = view[y, x]
            assert not (a > 0 and r + g + b == 0), f"seed {seed}: an opaque black corner"
            alphas.append(a)
    assert min(alphas) == 0  # some view moved the square and left transparency behind


def test_a_fully_transparent_image_stays_fully_transparent() -> None:
    empty = Image.new("RGBA", (32, 32), (90, 180, 30, 0))
    for seed in SEEDS:
        assert pixels(augment_image(empty, 1.0, seed))[..., 3].max() == 0


def test_colour_hidden_under_transparent_pixels_does_not_change_the_view(grinning: Image.Image) -> None:
    rgba = pixels(grinning).astype(np.uint8)
    hidden = rgba.copy()
    hidden[rgba[..., 3] == 0, :3] = np.random.default_rng(0).integers(0, 256, size=(int((rgba[..., 3] == 0).sum()), 3))
    other = Image.fromarray(hidden, "RGBA")
    for seed in range(8):
        assert np.array_equal(pixels(augment_image(grinning, 1.0, seed)), pixels(augment_image(other, 1.0, seed)))


def test_views_of_an_opaque_picture_keep_a_visible_subject(dog: Image.Image) -> None:
    for seed in SEEDS:
        alpha = pixels(augment_image(dog, 1.0, seed))[..., 3]
        assert (alpha > 0).mean() > 0.3 * (pixels(dog)[..., 3] > 0).mean()


# Text


def test_text_strength_zero_returns_the_text_unchanged() -> None:
    messy = "grinning  face ;grinning"
    assert augment_text(messy, 0.0, seed=1) == messy


def test_text_the_same_seed_gives_the_same_caption() -> None:
    assert [augment_text(CAPTION, 1.0, seed) for seed in SEEDS] == [augment_text(CAPTION, 1.0, seed) for seed in SEEDS]


def test_text_different_seeds_give_different_captions() -> None:
    assert len({augment_text(CAPTION, 1.0, seed) for seed in SEEDS}) >= 5


def test_text_is_never_empty() -> None:
    for caption in ("a", "a; b", "grinning face; grinning", "x-y; -", CAPTION):
        for seed in range(200):
            assert augment_text(caption, 1.0, seed).strip()


def test_text_whitespace_is_collapsed() -> None:
    for seed in SEEDS:
        view = augment_text("  smiling   face with\topen mouth ;  smiley ", 1.0, seed)
        assert view == " ".join(view.split())


def test_text_only_uses_words_of_the_caption() -> None:
    words = set(CAPTION.replace(";", " ").replace("-", " ").split()) | {"male-police-officer"}
    for seed in range(100):
        assert set(augment_text(CAPTION, 1.0, seed).replace(";", " ").split()) <= words


def test_text_drops_a_short_name_but_never_the_last_part() -> None:
    views = [augment_text("grinning face; grinning", 1.0, seed) for seed in range(200)]
    assert any(";" not in view for view in views)  # some views lost a part
    assert any(view.count(";") == 1 for view in views)  # others kept both
    assert all(augment_text("grinning", 1.0, seed) == "grinning" for seed in range(200))  # a lone part stays


def test_text_drops_words_but_keeps_one_per_part() -> None:
    views = [augment_text("smiling face with open mouth; smiley", 1.0, seed) for seed in range(200)]
    assert any(len(view.split(";")[0].split()) < 5 for view in views if ";" in view)
    assert all(part.strip() for view in views for part in view.split(";"))


def test_text_swaps_two_adjacent_words() -> None:
    views = {augment_text("one two three four", 1.0, seed) for seed in range(200)}
    assert {"two one three four", "one three two four", "one two four three"} & views


def test_text_turns_hyphens_in_short_names_into_spaces_but_not_in_the_name() -> None:
    views = [augment_text("e-mail; e-mail_symbol", 1.0, seed) for seed in range(200)]
    assert any(set(view.split(";")[-1].split()) <= {"e", "mail", "symbol"} for view in views)
    assert any(view.endswith("e-mail_symbol") for view in views)
    assert all(view.split(";")[0] == "e-mail" for view in views if ";" in view)


def test_text_higher_strength_changes_more_captions() -> None:
    def changed(strength: float) -> int:
        return sum(augment_text(CAPTION, strength, seed) != CAPTION for seed in range(200))

    assert 0 < changed(0.1) < changed(1.0)


def test_text_strength_outside_zero_to_one_is_refused() -> None:
    for strength in (-0.01, 1.01):
        with pytest.raises(ValueError, match="strength"):
            augment_text(CAPTION, strength, seed=0)
