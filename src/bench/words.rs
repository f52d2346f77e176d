//! Word lists the synthetic samples are made from: a small product taxonomy in the style of
//! Shopify's (`Top > Second > Leaf`), brands, title adjectives, description filler and the
//! HTML wrappers real descriptions often come in.

/// Top level, then second levels with their leaves.
pub type Taxonomy = &'static [(&'static str, &'static [(&'static str, &'static [&'static str])])];

/// The category tree.
pub const TAXONOMY: Taxonomy = &[
    (
        "Apparel & Accessories",
        &[
            ("Clothing", &["Shirts & Tops", "Dresses", "Pants", "Outerwear", "Activewear", "Sleepwear"]),
            ("Shoes", &["Sneakers", "Boots", "Sandals", "Slippers", "Heels"]),
            ("Jewelry", &["Necklaces", "Rings", "Earrings", "Bracelets", "Watches"]),
            ("Handbags, Wallets & Cases", &["Handbags", "Wallets", "Backpacks", "Card Holders"]),
        ],
    ),
    (
        "Home & Garden",
        &[
            ("Decor", &["Candles", "Vases", "Wall Art", "Rugs", "Clocks", "Cushions"]),
            ("Kitchen & Dining", &["Cookware", "Tableware", "Drinkware", "Kitchen Tools", "Coffee Makers"]),
            ("Lawn & Garden", &["Planters", "Garden Tools", "Outdoor Lighting", "Seeds"]),
            ("Linens & Bedding", &["Bed Sheets", "Blankets", "Towels", "Pillows"]),
        ],
    ),
    (
        "Electronics",
        &[
            ("Audio", &["Headphones", "Speakers", "Microphones", "Turntables"]),
            ("Computers", &["Laptops", "Keyboards", "Monitors", "Computer Mice"]),
            ("Communications", &["Phone Cases", "Chargers", "Phone Mounts"]),
            ("Video", &["Cameras", "Projectors", "Camera Lenses"]),
        ],
    ),
    (
        "Health & Beauty",
        &[
            ("Personal Care", &["Skin Care", "Hair Care", "Shaving", "Oral Care", "Fragrances"]),
            ("Cosmetics", &["Lipstick", "Foundation", "Mascara", "Nail Polish"]),
            ("Health Care", &["Vitamins & Supplements", "First Aid", "Massagers"]),
        ],
    ),
    (
        "Sporting Goods",
        &[
            ("Exercise & Fitness", &["Yoga Mats", "Dumbbells", "Resistance Bands", "Jump Ropes"]),
            ("Outdoor Recreation", &["Tents", "Sleeping Bags", "Fishing Rods", "Bicycles"]),
            ("Team Sports", &["Soccer Balls", "Basketballs", "Baseball Gloves"]),
        ],
    ),
    (
        "Toys & Games",
        &[
            ("Games", &["Board Games", "Card Games", "Puzzles"]),
            ("Toys", &["Dolls", "Building Sets", "Plush Toys", "Toy Vehicles"]),
        ],
    ),
    (
        "Food, Beverages & Tobacco",
        &[
            ("Beverages", &["Coffee", "Tea", "Juice", "Sparkling Water"]),
            ("Food Items", &["Snacks", "Candy & Chocolate", "Spices", "Baking Mixes"]),
        ],
    ),
    (
        "Arts & Entertainment",
        &[
            ("Hobbies & Creative Arts", &["Paint", "Sketchbooks", "Yarn", "Sewing Kits"]),
            ("Musical Instruments", &["Guitars", "Keyboards & Pianos", "Drums", "Ukuleles"]),
            ("Party & Celebration", &["Balloons", "Gift Wrap", "Party Favors"]),
        ],
    ),
    (
        "Animals & Pet Supplies",
        &[("Pet Supplies", &["Dog Beds", "Cat Toys", "Pet Bowls", "Leashes", "Aquarium Filters"])],
    ),
    (
        "Baby & Toddler",
        &[
            ("Nursing & Feeding", &["Baby Bottles", "Bibs", "High Chairs"]),
            ("Baby Transport", &["Strollers", "Car Seats", "Baby Carriers"]),
        ],
    ),
];

/// Brands.
pub const BRANDS: &[&str] = &[
    "Northwind",
    "Acme",
    "Lumina",
    "Bellweather",
    "Fjordline",
    "Kestrel & Co",
    "Maple Row",
    "Otterbox Studio",
    "Sunforge",
    "Tidewater",
    "Umbra Goods",
    "Verdant",
    "Wildhaven",
    "Yarrow",
    "Zephyr Labs",
    "Copperleaf",
    "Halcyon",
    "Ironbark",
    "Juniper Lane",
    "Marigold",
    "Nimbus",
    "Oakhurst",
    "Pinecrest",
    "Quillon",
];

/// Adjectives for titles (and the fourth category level).
pub const TITLE_ADJECTIVES: &[&str] = &[
    "Classic",
    "Premium",
    "Organic",
    "Vintage",
    "Wireless",
    "Handmade",
    "Compact",
    "Deluxe",
    "Eco",
    "Portable",
    "Waterproof",
    "Minimalist",
    "Oversized",
    "Lightweight",
    "Ergonomic",
    "Rustic",
    "Modern",
    "Kids",
];

/// Filler for titles and descriptions.
pub const DESCRIPTION_WORDS: &[&str] = &[
    "made",
    "from",
    "soft",
    "durable",
    "cotton",
    "recycled",
    "steel",
    "ceramic",
    "bamboo",
    "leather",
    "with",
    "a",
    "the",
    "for",
    "everyday",
    "use",
    "and",
    "easy",
    "care",
    "machine",
    "washable",
    "fits",
    "most",
    "sizes",
    "available",
    "in",
    "several",
    "colours",
    "designed",
    "to",
    "last",
    "perfect",
    "gift",
    "our",
    "best",
    "selling",
    "item",
    "ships",
    "within",
    "two",
    "days",
    "free",
    "returns",
    "dimensions",
    "weight",
    "grams",
    "includes",
    "one",
    "set",
    "of",
    "matte",
    "finish",
    "hand",
    "crafted",
    "locally",
    "sourced",
    "materials",
    "warranty",
    "year",
    "new",
    "season",
    "limited",
    "edition",
    "comfortable",
    "stylish",
    "practical",
    "gentle",
    "on",
    "skin",
    "low",
    "energy",
    "battery",
    "life",
    "hours",
    "compatible",
    "all",
    "devices",
    "size",
    "chart",
    "below",
];

/// Markup real descriptions come wrapped in (the reference's prompt warns about it).
pub const HTML_WRAPPERS: &[(&str, &str)] = &[
    ("<p>", "</p>"),
    ("<div class=\"product-description\"><span>", "</span></div>"),
    ("<ul><li>", "</li></ul>"),
    ("<p><strong>Details</strong><br>", "</p><script>window.dataLayer=window.dataLayer||[];</script>"),
    ("<style>.desc{color:#333}</style><p class=\"desc\">", "</p>"),
];
