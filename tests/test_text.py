from qrewrite.text import normalize_query, tokenize


def test_normalize_query_folds_case_width_and_whitespace() -> None:
    assert normalize_query("  Running\tSHOES  ") == "running shoes"
    assert normalize_query("ｎｉｋｅ　shoes") == "nike shoes"  # full-width letters and space
    assert normalize_query("Straße") == "strasse"  # case-folding, not just lower()
    assert normalize_query("   ") == ""


def test_tokenize_drops_apostrophes_and_plural_s() -> None:
    assert tokenize("Men's Running Shoes") == ["men", "running", "shoe"]
    assert tokenize("mens shoe") == ["men", "shoe"]
    assert tokenize("Sugar-Free, 12 oz") == ["sugar", "free", "12", "oz"]
    assert tokenize("glass") == ["glass"]  # "ss" is not a plural
