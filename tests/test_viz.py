import pytest

import lomix_core as lx


@pytest.mark.parametrize("num_classes", [2, 8, 9, 14, 40])
def test_every_class_gets_its_own_colour_and_none_is_grey(num_classes):
    from matplotlib.colors import Normalize

    cmap = lx.viz.label_colours(num_classes)
    shown = [cmap(Normalize(0, num_classes - 1)(c)) for c in range(num_classes)]  # what imshow draws
    assert shown[0][3] == 0  # background: clear
    foreground = {tuple(round(v, 4) for v in colour[:3]) for colour in shown[1:]}
    assert len(foreground) == num_classes - 1
    assert not any(r == g == b for r, g, b in foreground)
