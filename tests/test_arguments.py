"""One-line checks on what users pass in (lomix_core.foundations.arguments)."""
import pytest

from lomix_core.foundations.arguments import is_int, reject_unknown_options


def test_a_bool_is_not_a_count():
    assert is_int(3) and not is_int(True) and not is_int(3.0)


def test_a_misspelt_option_names_the_options_there_are():
    def build(in_channels, width=8, depth=4):
        return in_channels, width, depth
    with pytest.raises(ValueError, match=r"^unet does not take \['widht'\]; its options are \['depth', 'width'\]$"):
        reject_unknown_options(build, {"widht": 8}, "unet", reserved=("in_channels",))
    reject_unknown_options(build, {"width": 8}, "unet", reserved=("in_channels",))  # a known one passes


def test_a_function_taking_any_keyword_accepts_every_option():
    reject_unknown_options(lambda **kwargs: kwargs, {"anything": 1}, "f", reserved=())
