"""The shop's world: categories, product types, attribute vocabularies, and how people say them.

Two vocabularies live side by side on purpose. Titles use the *catalog* words ("Running Shoes",
"Decaf", "Men's"); shoppers also use *gap* words the catalog never prints ("kicks", "without
caffeine", "guys"). A lexical engine matches only the first kind, which is the gap rewriting closes.
The first entry of every variant tuple is the catalog form; the rest are shoppers' forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Feature:
    """A binary product feature whose absence shoppers ask for with a negation ("without X")."""

    name: str
    present_title: str  # printed in a title when the product has the feature ("" = not printed)
    absent_title: str  # printed when it lacks it ("Decaf", "Wired", "Slip-On")
    present_query: tuple[str, ...]
    absent_query_lexical: tuple[str, ...]  # negations phrased in catalog words ("decaf")
    absent_query_negated: tuple[str, ...]  # negations a lexical engine gets wrong ("no caffeine")
    presence_rate: float = 0.6


@dataclass(frozen=True)
class ProductType:
    title: str  # catalog form, e.g. "Running Shoes"
    gap_terms: tuple[str, ...]  # synonyms and slang absent from titles
    price: tuple[float, float]  # median price, lognormal sigma
    feature: Feature | None = None
    substitutes: tuple[str, ...] = ()  # other types that partially satisfy this one (grade 1)
    title_alias: str = ""  # a second catalog term some titles carry ("Sneakers")


@dataclass(frozen=True)
class Category:
    name: str
    types: tuple[ProductType, ...]
    brands: tuple[str, ...]
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...]
    genders: tuple[str, ...] = ()
    size_prefix: str = ""  # "Size " for shoes and apparel, "" for "12 oz"
    fluff: tuple[str, ...] = field(default=("Premium", "Classic", "Everyday"))


COLOURS: dict[str, tuple[str, ...]] = {
    "Black": ("black", "blk", "jet black"),
    "White": ("white", "wht", "snow white"),
    "Grey": ("grey", "gray", "charcoal", "gry"),
    "Blue": ("blue", "navy", "blu"),
    "Red": ("red", "crimson", "burgundy"),
    "Green": ("green", "olive", "grn"),
    "Pink": ("pink", "rose", "blush"),
    "Brown": ("brown", "camel", "brwn"),
    "Beige": ("beige", "cream", "khaki"),
    "Purple": ("purple", "violet", "lavender"),
}

GENDERS: dict[str, tuple[str, ...]] = {
    # title form first (as printed), then query forms
    "Men": ("men's", "mens", "for men", "guys", "male", "man"),
    "Women": ("women's", "womens", "for women", "ladies", "female", "for her"),
    "Kids": ("kids'", "kids", "for kids", "children's", "youth", "boys"),
    "Unisex": ("unisex", "unisex"),
}

MATERIALS: dict[str, tuple[str, ...]] = {
    "Leather": ("leather", "genuine leather", "real leather"),
    "Mesh": ("mesh", "breathable mesh"),
    "Suede": ("suede", "sued"),
    "Canvas": ("canvas", "cnvs"),
    "Cotton": ("cotton", "100% cotton"),
    "Polyester": ("polyester", "poly"),
    "Wool": ("wool", "merino"),
    "Fleece": ("fleece", "sherpa"),
    "Denim": ("denim", "jean"),
    "Nylon": ("nylon", "ripstop"),
    "Stainless Steel": ("stainless steel", "stainless", "ss"),
    "Cast Iron": ("cast iron", "castiron"),
    "Ceramic": ("ceramic", "porcelain"),
    "Glass": ("glass", "borosilicate"),
    "Plastic": ("plastic", "bpa plastic"),
    "Aluminum": ("aluminum", "aluminium", "alu"),
    "Rubber": ("rubber", "rubberized"),
    "Neoprene": ("neoprene", "neo"),
    "Foam": ("foam", "memory foam"),
    "Wood": ("wood", "wooden", "solid wood"),
    "Metal": ("metal", "steel frame"),
    "Silicone": ("silicone", "silicon"),
    "Organic": ("organic", "bio"),
}

SIZES: dict[str, tuple[str, ...]] = {
    **{str(n): (f"size {n}", str(n), f"sz {n}") for n in range(5, 14)},
    "XS": ("size xs", "extra small", "x-small"),
    "S": ("size s", "small", "sm"),
    "M": ("size m", "medium", "med"),
    "L": ("size l", "large", "lg"),
    "XL": ("size xl", "extra large", "x-large"),
    "XXL": ("size xxl", "2xl", "xx-large"),
    "8 oz": ("8 oz", "8oz", "8 ounce"),
    "12 oz": ("12 oz", "12oz", "12 ounce"),
    "16 oz": ("16 oz", "16oz", "pint size"),
    "1 lb": ("1 lb", "1lb", "1 pound"),
    "2 lb": ("2 lb", "2lb", "2 pound"),
    "5 lb": ("5 lb", "5lbs", "5 pound"),
    "10 lb": ("10 lb", "10lbs", "10 pound"),
    "20 lb": ("20 lb", "20lbs", "20 pound"),
    "12 Count": ("12 count", "12 pack", "dozen"),
    "iPhone 15": ("iphone 15", "iphone15", "ip15"),
    "iPhone 14": ("iphone 14", "iphone14", "ip14"),
    "Galaxy S24": ("galaxy s24", "s24", "samsung s24"),
    "Pixel 8": ("pixel 8", "pixel8", "google pixel 8"),
}

LACES = Feature(
    "laces",
    "Lace-Up",
    "Slip-On",
    ("lace up", "with laces"),
    ("slip on", "slip-on"),
    ("without laces", "no laces", "laceless", "no tie"),
)
ZIPPER = Feature(
    "zipper",
    "Full-Zip",
    "Pullover",
    ("zip up", "with zipper"),
    ("pullover",),
    ("without zipper", "no zip", "zipless"),
)
RIPS = Feature(
    "rips",
    "Ripped",
    "Clean Hem",
    ("ripped", "distressed"),
    ("clean hem",),
    ("without rips", "no holes", "not ripped"),
    presence_rate=0.4,
)
WIRE = Feature(
    "wireless",
    "Wireless Bluetooth",
    "Wired",
    ("wireless", "bluetooth", "cordless"),
    ("wired",),
    ("with cord", "no bluetooth", "plug in"),
)
NONSTICK = Feature(
    "nonstick",
    "Non-Stick",
    "Uncoated",
    ("nonstick", "non stick", "teflon"),
    ("uncoated",),
    ("without teflon", "no coating", "no nonstick", "pfas free"),
)
FRAGRANCE = Feature(
    "fragrance",
    "Scented",
    "Fragrance-Free",
    ("scented", "with fragrance"),
    ("fragrance free", "fragrance-free"),
    ("without fragrance", "no perfume", "unscented", "no smell"),
)
CAFFEINE = Feature(
    "caffeine",
    "",
    "Decaf",
    ("caffeinated", "regular", "strong"),
    ("decaf",),
    ("without caffeine", "no caffeine", "caffeine free", "decaffeinated"),
)
SUGAR = Feature(
    "sugar",
    "",
    "Sugar-Free",
    ("sweet", "sweetened"),
    ("sugar free", "sugar-free"),
    ("without sugar", "no sugar", "zero sugar", "unsweetened"),
)
ARMRESTS = Feature(
    "armrests",
    "with Armrests",
    "Armless",
    ("with arms", "with armrests"),
    ("armless",),
    ("without arms", "no armrests", "no arms"),
)

CATEGORIES: tuple[Category, ...] = (
    Category(
        "Footwear",
        (
            ProductType(
                "Running Shoes",
                ("jogging shoes", "runners", "kicks for running", "running trainers"),
                (80, 0.35),
                LACES,
                ("Sneakers",),
                "Sneakers",
            ),
            ProductType(
                "Sneakers",
                ("trainers", "kicks", "tennis shoes", "sneaks"),
                (70, 0.35),
                LACES,
                ("Running Shoes",),
            ),
            ProductType("Boots", ("booties", "hikers", "work boot"), (110, 0.35), LACES),
            ProductType("Sandals", ("slides", "flip flops", "thongs"), (35, 0.4)),
            ProductType("Slippers", ("house shoes", "scuffs", "mules"), (30, 0.4)),
        ),
        ("Stridex", "Nordvik", "Aeroflex", "Trailhawk", "Peakline", "Velora"),
        ("Black", "White", "Grey", "Blue", "Red", "Brown"),
        ("Leather", "Mesh", "Suede", "Canvas"),
        tuple(str(n) for n in range(5, 14)),
        ("Men", "Women", "Kids", "Unisex"),
        "Size ",
        ("Lightweight", "Breathable", "Comfortable", "Non-Slip"),
    ),
    Category(
        "Tops",
        (
            ProductType("T-Shirt", ("tee", "tshirt", "tee shirt", "top"), (20, 0.35)),
            ProductType(
                "Hoodie",
                ("hooded sweatshirt", "hoody", "hoodies"),
                (45, 0.35),
                ZIPPER,
                ("Sweater",),
            ),
            ProductType("Jacket", ("coat", "windbreaker", "parka"), (90, 0.4), ZIPPER),
            ProductType("Sweater", ("jumper", "knit", "cardigan"), (50, 0.35), None, ("Hoodie",)),
        ),
        ("Nordvik", "Urbanloom", "Kestrel & Co", "Brightwear", "Mossline", "Halden"),
        tuple(COLOURS),
        ("Cotton", "Polyester", "Wool", "Fleece"),
        ("XS", "S", "M", "L", "XL", "XXL"),
        ("Men", "Women", "Kids", "Unisex"),
        "Size ",
        ("Slim Fit", "Relaxed Fit", "Soft", "Casual"),
    ),
    Category(
        "Bottoms",
        (
            ProductType("Jeans", ("denims", "dungarees", "jeanz"), (50, 0.35), RIPS),
            ProductType("Leggings", ("yoga pants", "tights", "jeggings"), (30, 0.35)),
            ProductType("Shorts", ("cutoffs", "trunks", "bermudas"), (25, 0.35)),
            ProductType("Trousers", ("pants", "slacks", "chinos"), (45, 0.35)),
        ),
        ("Urbanloom", "Halden", "Brightwear", "Kestrel & Co", "Driftwood"),
        ("Black", "Blue", "Grey", "Beige", "Green"),
        ("Denim", "Cotton", "Polyester"),
        ("XS", "S", "M", "L", "XL"),
        ("Men", "Women", "Kids"),
        "Size ",
        ("Stretch", "High Rise", "Everyday", "Classic"),
    ),
    Category(
        "Bags",
        (
            ProductType("Backpack", ("rucksack", "bookbag", "daypack", "knapsack"), (55, 0.4)),
            ProductType("Handbag", ("purse", "pocketbook", "tote"), (70, 0.45)),
            ProductType("Duffel Bag", ("gym bag", "weekender", "holdall"), (50, 0.4)),
            ProductType("Wallet", ("billfold", "card holder", "money clip"), (30, 0.4)),
        ),
        ("Voyant", "Carryall", "Ridgepack", "Lumen", "Osprel"),
        ("Black", "Brown", "Grey", "Blue", "Green", "Pink"),
        ("Leather", "Nylon", "Canvas", "Polyester"),
        (),
        ("Men", "Women", "Unisex"),
        "",
        ("Travel", "Water-Resistant", "Large Capacity", "Slim"),
    ),
    Category(
        "Audio",
        (
            ProductType(
                "Headphones", ("headset", "cans", "over ear"), (90, 0.5), WIRE, ("Earbuds",)
            ),
            ProductType(
                "Earbuds",
                ("earphones", "in ear", "ear buds", "buds"),
                (60, 0.5),
                WIRE,
                ("Headphones",),
            ),
            ProductType("Speaker", ("boombox", "soundbar", "bt speaker"), (70, 0.5), WIRE),
        ),
        ("Sonora", "Bassline", "Auralis", "Echofy", "Tonic"),
        ("Black", "White", "Grey", "Blue", "Red"),
        ("Plastic", "Aluminum"),
        (),
        (),
        "",
        ("Noise Cancelling", "Hi-Fi", "Long Battery", "Portable"),
    ),
    Category(
        "Phone Accessories",
        (
            ProductType("Phone Case", ("cover", "skin", "bumper"), (18, 0.35)),
            ProductType("Screen Protector", ("tempered glass", "screen guard", "film"), (12, 0.3)),
            ProductType("Charger", ("charging cable", "power adapter", "plug"), (20, 0.35), WIRE),
        ),
        ("Shieldly", "Volta", "Armorix", "Cleargard", "Zenith"),
        ("Black", "White", "Blue", "Pink", "Purple"),
        ("Silicone", "Plastic", "Glass"),
        ("iPhone 15", "iPhone 14", "Galaxy S24", "Pixel 8"),
        (),
        "for ",
        ("Shockproof", "Slim", "Fast", "Clear"),
    ),
    Category(
        "Kitchen",
        (
            ProductType(
                "Frying Pan",
                ("skillet", "fry pan", "saute pan"),
                (40, 0.4),
                NONSTICK,
                ("Saucepan",),
            ),
            ProductType(
                "Saucepan", ("pot", "stockpot", "sauce pot"), (45, 0.4), NONSTICK, ("Frying Pan",)
            ),
            ProductType("Chef Knife", ("kitchen knife", "cooks knife", "blade"), (50, 0.5)),
            ProductType("Mug", ("coffee cup", "cup", "tumbler"), (15, 0.35)),
            ProductType("Water Bottle", ("flask", "canteen", "hydro bottle"), (22, 0.35)),
        ),
        ("Cucina", "Hearthly", "Ferro", "Kitchara", "Bellwood"),
        ("Black", "Grey", "Red", "Blue", "White"),
        ("Stainless Steel", "Cast Iron", "Ceramic", "Glass"),
        (),
        (),
        "",
        ("Dishwasher Safe", "Professional", "Induction Ready", "Heavy Duty"),
    ),
    Category(
        "Personal Care",
        (
            ProductType("Shampoo", ("hair wash", "hair cleanser", "poo"), (12, 0.35), FRAGRANCE),
            ProductType(
                "Conditioner", ("hair softener", "detangler", "rinse"), (12, 0.35), FRAGRANCE
            ),
            ProductType("Body Wash", ("shower gel", "soap", "bath gel"), (10, 0.35), FRAGRANCE),
            ProductType(
                "Moisturizer", ("lotion", "face cream", "moisturiser"), (20, 0.45), FRAGRANCE
            ),
        ),
        ("Purelle", "Verdana", "Aquamist", "Bloomea", "Klarity"),
        (),
        ("Organic",),
        ("8 oz", "12 oz", "16 oz"),
        ("Men", "Women", "Unisex"),
        "",
        ("Gentle", "Natural", "Daily", "Hydrating"),
    ),
    Category(
        "Fitness",
        (
            ProductType("Yoga Mat", ("exercise mat", "workout mat", "pilates mat"), (30, 0.35)),
            ProductType("Dumbbells", ("hand weights", "free weights", "db set"), (40, 0.45)),
            ProductType(
                "Resistance Bands", ("exercise bands", "stretch bands", "loop bands"), (18, 0.35)
            ),
            ProductType("Jump Rope", ("skipping rope", "speed rope"), (12, 0.35)),
        ),
        ("Flexcore", "Ironpeak", "Zenfit", "Pulseon", "Gritline"),
        ("Black", "Blue", "Purple", "Pink", "Green"),
        ("Rubber", "Neoprene", "Foam"),
        ("5 lb", "10 lb", "20 lb"),
        (),
        "",
        ("Non-Slip", "Home Gym", "Durable", "Portable"),
    ),
    Category(
        "Grocery",
        (
            ProductType(
                "Coffee", ("joe", "java", "espresso beans", "coffee beans"), (14, 0.35), CAFFEINE
            ),
            ProductType("Tea", ("chai", "cuppa", "tea bags"), (8, 0.35), CAFFEINE),
            ProductType("Chocolate", ("cocoa bar", "choc", "candy bar"), (6, 0.4), SUGAR),
            ProductType(
                "Protein Bars", ("energy bars", "snack bars", "granola bars"), (22, 0.35), SUGAR
            ),
        ),
        ("Morning Ridge", "Cacaona", "Highland Leaf", "Nutrivo", "Bruvva"),
        (),
        ("Organic",),
        ("12 oz", "1 lb", "2 lb", "12 Count"),
        (),
        "",
        ("Fair Trade", "Gourmet", "Bulk", "Fresh"),
    ),
    Category(
        "Furniture",
        (
            ProductType(
                "Office Chair",
                ("desk chair", "computer chair", "gaming chair"),
                (150, 0.45),
                ARMRESTS,
            ),
            ProductType("Desk", ("workstation", "writing table", "computer table"), (180, 0.45)),
            ProductType("Floor Lamp", ("standing lamp", "torchiere", "uplight"), (60, 0.4)),
            ProductType("Bookshelf", ("bookcase", "shelving unit", "book rack"), (90, 0.45)),
        ),
        ("Oakhaus", "Nestique", "Lindholm", "Woodcraft", "Modula"),
        ("Black", "White", "Brown", "Grey"),
        ("Wood", "Metal", "Mesh"),
        (),
        (),
        "",
        ("Modern", "Ergonomic", "Minimalist", "Easy Assembly"),
    ),
)

FILLER_WORDS: tuple[str, ...] = (
    "cheap",
    "best",
    "buy",
    "sale",
    "on sale",
    "new",
    "top rated",
    "deals",
    "online",
    "2026",
    "good",
    "affordable",
    "free shipping",
    "near me",
    "gift",
)

TYPES_BY_TITLE: dict[str, tuple[Category, ProductType]] = {
    t.title: (c, t) for c in CATEGORIES for t in c.types
}
