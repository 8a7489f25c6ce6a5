"""mozart.evaluation.style: features, the composer classifier, chance levels and adherence rates."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from metrics_helpers import make_score, random_notes, styled_notes
from mozart.evaluation import style


def test_features_have_fixed_length_and_are_finite():
    rng = np.random.default_rng(0)
    score = make_score(random_notes(rng, 20))
    feats = style.segment_features(score, segment_bars=4, max_segments=3)
    assert len(feats) == 3
    for f in feats:
        assert f.shape == (style.N_FEATURES,) and np.all(np.isfinite(f))
    whole = style.segment_features(score)
    assert len(whole) == 1 and whole[0].shape == (style.N_FEATURES,)


def test_pitch_class_part_is_the_onset_histogram():
    score = make_score([(0, 480, 60), (480, 480, 60), (960, 480, 67), (1440, 480, 72)])
    (f,) = style.segment_features(score)
    assert f[0] == pytest.approx(0.75) and f[7] == pytest.approx(0.25) and f[:12].sum() == pytest.approx(1.0)


def test_empty_score_and_sparse_segments_give_no_features():
    assert style.segment_features(make_score([])) == []
    assert style.segment_features(make_score([(0, 480, 60)])) == []  # a single note is not a segment


def test_classifier_separates_two_clearly_different_toy_composers():
    rng = np.random.default_rng(1)
    x, y = [], []
    for k in range(16):
        composer = k % 2
        x += style.segment_features(make_score(styled_notes(rng, composer, 8)))
        y.append(f"c{composer}")
    model = style.fit_classifier(x[:12], y[:12], seed=0)
    assert style.accuracy(model, x[12:], y[12:]) == 1.0


def test_classifier_needs_two_composers():
    with pytest.raises(ValueError, match="two composers"):
        style.fit_classifier(np.zeros((3, style.N_FEATURES)), ["a", "a", "a"])


def test_chance_levels_and_adherence():
    levels = style.chance_levels(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    assert levels["chance"] == pytest.approx(1 / 3) and levels["majority_rate"] == pytest.approx(0.25)
    assert style.adherence(["a", None, "b", "b"], ["a", "a", "b", "c"]) == pytest.approx(0.5)
    assert math.isnan(style.adherence([], []))
    assert math.isnan(style.accuracy(None, [], []))


@pytest.mark.shared
def test_classifier_beats_chance_on_held_out_real_works(shared_corpora):
    """piano-midi-de, four distinct composers, split by work (movements of one work stay together)."""
    import symusic
    from sklearn.model_selection import GroupShuffleSplit

    root = shared_corpora / "piano-midi-de" / "midis"
    composers = ["Chopin", "Mozart", "Liszt", "Debussy"]
    files = [(c, f) for c in composers for f in sorted((root / c).glob("*.mid"))]
    if len({c for c, _ in files}) < len(composers):
        pytest.skip(f"{root} lacks some of {composers}")
    works = [f"{c}/{re.sub(r'_[0-9]+$', '', f.stem)}" for c, f in files]  # schub_d760_2 -> schub_d760
    train_idx, test_idx = next(GroupShuffleSplit(1, test_size=0.3, random_state=0).split(files, groups=works))
    assert not {works[i] for i in train_idx} & {works[i] for i in test_idx}

    def featurise(indices):
        x, y = [], []
        for i in indices:
            composer, path = files[i]
            for f in style.segment_features(symusic.Score(str(path)), segment_bars=16, max_segments=4):
                x.append(f)
                y.append(composer)
        return x, y

    x_train, y_train = featurise(train_idx)
    x_test, y_test = featurise(test_idx)
    model = style.fit_classifier(x_train, y_train, seed=0)
    acc = style.accuracy(model, x_test, y_test)
    levels = style.chance_levels(y_train, y_test)
    print(f"held-out style accuracy {acc:.3f}, chance {levels['chance']:.3f}, majority {levels['majority_rate']:.3f}")
    assert acc > levels["chance"] and acc > levels["majority_rate"]
