from qrewrite.text import (
    catalog_word_counts,
    corrects_to_catalog,
    normalize_query,
    repeated_words,
    respells,
    same_words,
    tokenize,
    words,
)


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


def test_invisible_characters_do_not_make_another_query() -> None:
    from qrewrite.text import normalize_query

    assert normalize_query("running\u200b shoes") == normalize_query("running shoes")
    assert normalize_query("blue\x00\x00 shoes") == "blue shoes"
    assert normalize_query("\u202eoak\u202c desk\ufeff") == "oak desk"
    assert normalize_query("\u200b\u200d\u2060") == ""  # nothing visible: an empty query
    assert normalize_query("tab\tand\nnewline") == "tab and newline"  # whitespace stays a space


def test_repeated_words_are_those_the_rewrite_says_more_often_than_the_query() -> None:
    assert repeated_words("boyfriend jeans", "anime jeans jeans") == ["jean"]
    assert repeated_words("cowboy boots", "Cowboy BOOT boots") == ["boot"]  # as the engine reads
    assert repeated_words("2 pack 2 in 1", "2 pack 2 in 1 usb") == []  # the query's own repeat
    assert repeated_words("oak desk", "oak desk oak desk") == ["desk", "oak"]
    assert repeated_words("oak desk", "") == []


def test_same_words_in_any_order_or_number() -> None:
    assert same_words("cat grass", "Grass cat cat")
    assert same_words("cowboy boot", "cowboy boots")  # plural-stemmed, as the engine indexes
    assert not same_words("cat grass", "cat grass seeds")
    assert not same_words("cat grass", "cat")  # a dropped word changes what it retrieves
    # words of any script, not only what the demo engine indexes
    assert same_words("连衣裙 红色", "红色 连衣裙") and not same_words("连衣裙", "手机壳")
    assert not same_words("iphone 手机壳", "iphone 充电器")
    assert same_words("Café Crème", "creme cafe") is False and same_words("café", "CAFÉ")
    assert not same_words("!!!", "") and not same_words("!!!", "???")
    assert repeated_words("连衣裙", "连衣裙 连衣裙") == ["连衣裙"]


def test_words_are_tokenize_on_latin_text() -> None:
    for text in ("Men's Running Shoes", "size 9.5 t-shirt 100% cotton", "  BOOTS,  boots "):
        assert words(text) == tokenize(text)


def test_respells_keeps_every_word_and_fixes_only_spelling() -> None:
    assert respells("ironpeak dumbgells 20 lb", "Ironpeak dumbbells 20 lb")
    assert respells("12 oz protien bars", "12 oz protein bars")  # a transposition
    assert respells("wirless earbuds", "wireless earbuds")  # a letter left out
    assert respells("ear buds black", "earbuds black") and respells("tshirt", "t shirt")
    assert respells("kids tshirt", "kids t-shirt")  # the hyphen the shop writes
    assert not respells("kids t-shirt", "kids tshirt") and not respells("x-large tee", "xlarge tee")
    assert not respells("oak desk", "oak desk")  # nothing corrected
    assert not respells("oak desk", "desk oak")  # reordered: no spelling changed
    assert not respells("dumbgells 20 lb", "dumbbells 30 lb")  # a number is never "fixed"
    assert not respells("red mug", "bed mug")  # a short word: as likely another word
    assert not respells("dumbgells", "dumbbells 20 lb")  # words added
    assert not respells("blu saucpan", "blue coffee") and not respells("saucpan", "sauce pan x")
    # which spelling is right is the model's to say: respells only bounds how far it may go
    assert respells("leather boots", "leatherr boot")


def test_corrects_to_catalog_replaces_only_words_no_title_writes() -> None:
    shop = catalog_word_counts(
        ["Purelle Shampoo 8 oz", "Ironpeak Dumbbells 20 lb", "Blue Mug", "Red Crocs", "Bed Mug"]
    )
    assert shop["mug"] == 2 and "dumbbell" in shop  # counted by title, plural-stemmed
    assert corrects_to_catalog("ironpeak dumbgells 20 lb", "ironpeak dumbbells 20 lb", shop)
    assert corrects_to_catalog("puurelle 8 oz shampoo", "purelle shampoo 8 oz", shop)  # any order
    assert corrects_to_catalog("blu mug", "blue mug", shop)  # "blu" is no title's word
    assert not corrects_to_catalog("red mug", "bed mug", shop)  # "red" is the shop's word
    assert not corrects_to_catalog("crocs", "cros", shop)  # the shop writes "crocs"
    assert corrects_to_catalog("purelle shampo", "purelle shampoos", shop)  # stemmed alike
    assert not corrects_to_catalog("purelle shampo", "purelle shampooo", shop)  # no title's
    assert not corrects_to_catalog("ironpeak dumbgells", "ironpeak dumbbells 20 lb", shop)
    assert not corrects_to_catalog("dumbgells 20 lb", "dumbbells 30 lb", shop)  # a number
    assert not corrects_to_catalog("puurelle 8 oz", "ironpeak 8 oz", shop)  # not one edit
    assert not corrects_to_catalog("purelle shampoo", "shampoo purelle", shop)  # nothing fixed
