"""Word and name lists for the demo catalogue (`scriptlabs demo-data`).

Plain data, kept apart from the generator (`demo_text.py`, `demo.py`). Lists are in order of
rank, most common first: the generator draws from them with Zipf weights. The nouns that carry
the long tail of the vocabulary (the keywords) are in `demo_nouns.py`.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# fmt: off

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Adrian", "Agnes", "Aisha", "Alan", "Alba", "Alejandro", "Alice", "Amara", "Amir", "Ana",
    "Anders", "Andrea", "Anika", "Anna", "Anton", "Arjun", "Astrid", "Aurora", "Ayesha", "Barbara",
    "Beatrice", "Ben", "Bianca", "Boris", "Bruno", "Camille", "Carlos", "Carmen", "Caroline",
    "Catalina", "Cecilia", "Chen", "Chiara", "Chidi", "Chloe", "Clara", "Claude", "Colin", "Cora",
    "Daniel", "Dara", "David", "Delia", "Diego", "Dmitri", "Dorothy", "Edith", "Eduardo", "Elena",
    "Eleanor", "Elias", "Elif", "Eliza", "Emeka", "Emil", "Emma", "Enzo", "Erik", "Esther", "Eva",
    "Ezra", "Fatima", "Felix", "Fiona", "Francesca", "Frank", "Freya", "Gabriel", "Grace", "Greta",
    "Hana", "Hannah", "Harold", "Harriet", "Hassan", "Helen", "Henrik", "Hiro", "Hugo", "Ian",
    "Ibrahim", "Ines", "Ingrid", "Irene", "Isaac", "Isabel", "Ivan", "Jack", "Jakob", "James",
    "Jana", "Javier", "Jean", "Jin", "Joan", "Jonas", "Jorge", "Joseph", "Julia", "Julian", "Kai",
    "Kamala", "Karim", "Kate", "Kenji", "Kwame", "Lars", "Laura", "Leila", "Leo", "Leon", "Lina",
    "Linus", "Lucia", "Lucas", "Luis", "Maya", "Magnus", "Malik", "Margaret", "Maria", "Marie",
    "Marta", "Martin", "Mateo", "Matilda", "Mei", "Miguel", "Mila", "Milan", "Miriam", "Mohammed",
    "Nadia", "Naomi", "Nia", "Nikolai", "Nina", "Noah", "Nora", "Oliver", "Olga", "Omar", "Oscar",
    "Pablo", "Paolo", "Patricia", "Paul", "Pedro", "Petra", "Priya", "Rafael", "Rahul", "Rania",
    "Raymond", "Rebecca", "Rosa", "Ruth", "Sakura", "Samuel", "Sara", "Selma", "Sergei", "Simone",
    "Sofia", "Sonja", "Stefan", "Susan", "Tariq", "Teresa", "Theo", "Thomas", "Tomas", "Ursula",
    "Valentina", "Vera", "Victor", "Viktor", "Vivian", "Walter", "Wei", "Wilhelmina", "William",
    "Xavier", "Yara", "Yasmin", "Yuki", "Yusuf", "Zainab", "Zara", "Zoe", "Zofia", "Ravi", "Ingmar",
    "Lotte", "Odile", "Tobias", "Rosalind", "Keira", "Bartholomew",
)

LAST_NAMES: tuple[str, ...] = (
    "Abbott", "Acheampong", "Adeyemi", "Ahmed", "Albrecht", "Alvarez", "Andersen", "Arai",
    "Armstrong", "Asante", "Bailey", "Baker", "Banerjee", "Barros", "Bauer", "Becker", "Bennett",
    "Bergstrom", "Bianchi", "Blackwood", "Bosch", "Brandt", "Brennan", "Brooks", "Bui", "Byrne",
    "Caldwell", "Campbell", "Carvalho", "Castillo", "Chandra", "Chen", "Clarke", "Costa", "Cruz",
    "Dahl", "Das", "Delacroix", "Diaz", "Dubois", "Duarte", "Dunn", "Eklund", "Ellis", "Engel",
    "Erikson", "Evans", "Farah", "Fernandes", "Ferrari", "Fischer", "Fitzgerald", "Fontaine",
    "Foster", "Fujita", "Garcia", "Gallagher", "Gomez", "Gonzalez", "Graham", "Greenberg", "Gupta",
    "Haddad", "Halvorsen", "Hansen", "Harper", "Hartmann", "Hayes", "Hernandez", "Hoffmann", "Holm",
    "Horvath", "Hughes", "Hussain", "Ibarra", "Ivanova", "Jansen", "Jensen", "Johansson", "Jones",
    "Kang", "Kaplan", "Kato", "Keller", "Kelly", "Khan", "Kim", "Kowalski", "Kramer", "Kuznetsov",
    "Lambert", "Larsen", "Laurent", "Lee", "Lehmann", "Lindqvist", "Lopez", "Lund", "MacLeod",
    "Maddox", "Mahmoud", "Marchetti", "Martin", "Matsumoto", "Mendes", "Mensah", "Meyer", "Molina",
    "Moreau", "Morgan", "Murphy", "Nakamura", "Navarro", "Nguyen", "Nielsen", "Nilsson", "Novak",
    "Nowak", "Obi", "Okafor", "Okonkwo", "Olsen", "Ortega", "Osei", "Park", "Patel", "Pereira",
    "Petrov", "Pham", "Popescu", "Quinn", "Rahman", "Ramirez", "Rao", "Reyes", "Richter", "Rivera",
    "Roberts", "Rocha", "Romano", "Rossi", "Russo", "Saito", "Salazar", "Santos", "Sato", "Schmidt",
    "Schneider", "Scott", "Shah", "Sharma", "Silva", "Singh", "Sokolov", "Sorensen", "Suzuki",
    "Svensson", "Takahashi", "Tanaka", "Taylor", "Thompson", "Torres", "Tran", "Turner", "Ueda",
    "Valdez", "Varga", "Vasquez", "Vogel", "Volkov", "Wagner", "Walker", "Wang", "Watanabe",
    "Weber", "Wilson", "Wolf", "Wong", "Wright", "Xu", "Yamamoto", "Yang", "Yilmaz", "Young",
    "Zhang", "Zhou", "Zimmermann", "Ziegler", "Achebe", "Okoro", "Moretti", "Lindgren", "Vance",
    "Whitfield", "Ashdown", "Thornbury", "Pemberton", "Quill", "Rook", "Sterling",
)

# (category, kind): the kind chooses the title patterns and topics that suit the category.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Science Fiction", "fiction"),
    ("Fantasy", "fiction"),
    ("Mystery", "fiction"),
    ("Literary Fiction", "fiction"),
    ("Thriller", "fiction"),
    ("Historical Fiction", "fiction"),
    ("Programming", "tech"),
    ("History", "humanities"),
    ("Biography", "humanities"),
    ("Romance", "fiction"),
    ("Science", "science"),
    ("Philosophy", "humanities"),
    ("Databases", "tech"),
    ("Horror", "fiction"),
    ("Software Engineering", "tech"),
    ("Memoir", "humanities"),
    ("Psychology", "humanities"),
    ("Poetry", "fiction"),
    ("Economics", "humanities"),
    ("Physics", "science"),
    ("Travel", "life"),
    ("Cooking", "life"),
    ("Business", "life"),
    ("Mathematics", "science"),
    ("Distributed Systems", "tech"),
    ("Politics", "humanities"),
    ("Machine Learning", "tech"),
    ("Young Adult", "fiction"),
    ("Biology", "science"),
    ("Astronomy", "science"),
    ("Art", "humanities"),
    ("Music", "humanities"),
    ("Self-Help", "life"),
    ("Security", "tech"),
    ("Graphic Novels", "fiction"),
    ("Health", "life"),
    ("Design", "humanities"),
    ("Nature", "science"),
    ("Children's", "fiction"),
    ("Drama", "fiction"),
    ("Essays", "humanities"),
    ("Religion", "humanities"),
    ("Sports", "life"),
    ("Education", "humanities"),
)

TOPICS: dict[str, tuple[str, ...]] = {
    "tech": (
        "Distributed Systems", "Database Internals", "Functional Programming", "Compilers",
        "Operating Systems", "Computer Networks", "Concurrency", "Query Optimization",
        "Software Architecture", "Type Systems", "Algorithms", "Data Structures", "Cryptography",
        "Machine Learning", "Deep Learning", "Information Retrieval", "Full-Text Search",
        "Stream Processing", "Consensus Protocols", "Cloud Computing", "Web Development",
        "API Design", "Testing", "Refactoring", "Version Control", "Storage Engines",
        "Transaction Processing", "Graph Databases", "PostgreSQL", "Python", "Rust", "Haskell",
        "Erlang", "Unix", "Embedded Systems", "Computer Graphics", "Reverse Engineering",
        "Observability", "Site Reliability", "Data Engineering",
    ),
    "science": (
        "Quantum Mechanics", "General Relativity", "Thermodynamics", "Evolution", "Genetics",
        "Ecology", "Cosmology", "Number Theory", "Topology", "Probability", "Statistics",
        "Chaos Theory", "Neuroscience", "Marine Biology", "Botany", "Geology", "Climate",
        "Particle Physics", "Astrophysics", "Black Holes", "the Solar System", "Exoplanets",
        "Linear Algebra", "Calculus", "Game Theory", "Chemistry", "Microbiology", "Volcanoes",
        "Birds", "Forestry", "Oceanography", "Mushrooms",
    ),
    "humanities": (
        "Roman History", "the Spice Trade", "Ancient Greece", "the Renaissance", "Diplomacy",
        "Medieval Europe", "the Ottoman Empire", "Ethics", "Stoicism", "Existentialism",
        "Forgetting", "Language", "Power", "Democracy", "Capitalism", "Money", "Urbanism",
        "Architecture", "Photography", "Jazz", "Opera", "Typography", "Painting", "Cartography",
        "Attention", "Happiness", "Grief", "Friendship", "Freedom", "Justice", "Empire",
        "Revolution", "Migration", "the Enlightenment", "Mythology", "Rhetoric",
    ),
    "life": (
        "Bread", "Fermentation", "Slow Cooking", "Coffee", "Tea", "Running", "Cycling",
        "Alpinism", "Sleep", "Habits", "Negotiation", "Leadership", "Startups", "Marketing",
        "Personal Finance", "Horticulture", "Walking", "Sailing", "Chess", "Focus", "Meditation",
        "Small Business", "Football", "Swimming", "Spices", "Pastry",
    ),
}

# Adjectives of fiction titles ("The Silent {noun}"), most common first.
TITLE_ADJECTIVES = _words("""
Silent Last Hidden Lost Broken Golden Crimson Distant Forgotten Burning Frozen Endless Quiet Dark
Bright Wild Ancient Shattered Sleeping Wandering Restless Invisible Electric Scarlet Obsidian
Radiant Bitter Sweet Strange Fallen Rising Drowned Painted Crooked Gentle Savage Wicked Little
Great Final First Infinite Northern Southern Eastern Western Stolen Borrowed Empty Hungry Lonely
Patient Curious Impossible Luminous Feral Gilded Haunted Weightless Burnished Orphaned Ashen Blue
Green Red White Black Violet Seventh Thirteenth Hundredth Secondhand Tidal Solar Lunar Stellar
Nocturnal Vanishing Unfinished Unspoken Unquiet Deep High Lower Sunken Silken Wooden Woven
Forbidden Sacred Unseen Untold Perilous Glorious Fearless Wistful Drifting Shining Whispering
Fading Waking Singing Floating Turning Sleepless Nameless Faithless Boundless Reckless Bewildered
Reluctant Tender Furious Merciful Hollowed Starless Sunless Moonlit Windswept Unbroken
""")

# Titles by kind of category; the fields (CATEGORY_KINDS in demo_text.py):
#   {N} a keyword noun, {Ns} its plural, {AN} "A"/"An" and the noun, all capitalised; {T} a
#   title adjective; {P} a place; {F} a first name; {t} a topic, {Tt} the topic capitalised.
FICTION_TITLES: tuple[str, ...] = (
    "The {T} {N}",
    "The {T} {N}",
    "The {T} {N}",
    "{N} Chronicles",
    "The {N} Chronicles",
    "The {N} of {P}",
    "{T} {Ns}",
    "{T} {Ns}",
    "The {N} and the {N}",
    "{AN} in {P}",
    "Dispatches from {P}",
    "Return to {P}",
    "{F}'s {N}",
    "Beyond the {T} {N}",
    "Lament for the {N}",
    "{N} of {Ns}",
    "Children of the {N}",
    "The {N}'s {N}",
    "{T} {N}",
    "The {N}",
    "When the {N} Falls",
    "The {N} Who Stayed",
    "The Last {N} of {P}",
    "{AN} for {F}",
)
NONFICTION_TITLES: tuple[str, ...] = (
    "Notes on {t}",
    "An Introduction to {t}",
    "{Tt} in Practice",
    "Practical {Tt}",
    "Mastering {Tt}",
    "The Art of {t}",
    "A Short History of {t}",
    "{Tt}: A Beginner's Guide",
    "Thinking About {t}",
    "Essays on {t}",
    "{Tt} for the Curious",
    "Understanding {Tt}",
    "{Tt} from First Principles",
    "On {t}",
    "Lectures on {t}",
    "{Tt}, Explained",
    "The Handbook of {t}",
    "{Tt} and {t}",
    "The {T} Guide to {t}",
    "Designing for {t}",
    "The Hidden Life of {t}",
    "{Tt}: Patterns and Pitfalls",
)
SERIES_SUFFIXES: tuple[str, ...] = (
    ": Book Two", ": Book Three", ": Part Two", " II", " III", ": The Sequel",
)

# Real places, listed before the generated ones (toponyms) in titles and notes.
PLACES = _words("""
Lisbon Kyoto Venice Samarkand Alexandria Prague Istanbul Marrakesh Reykjavik Patagonia Tangier
Havana Zanzibar Odessa Trieste Lagos Valparaiso Hokkaido Kerala Titan Europa Mars Elsewhere Nowhere
Antwerp Bruges Tbilisi Yerevan Kathmandu Lhasa Timbuktu Cairo Damascus Baghdad Isfahan Seville
Granada Naples Palermo Dubrovnik Krakow Vilnius Riga Tallinn Helsinki Bergen Tromso Galway Cornwall
Yorkshire Orkney Shetland Hebrides Brittany Provence Tuscany Andalusia Sicily Sardinia Crete Rhodes
Cyprus Malta Madagascar Mauritius Tasmania Yukon Alaska Labrador Nantucket Savannah Memphis Oaxaca
Cusco Quito Montevideo Ushuaia
""")

# Generated English place names, also surnames: a head and a tail ("Ash" + "combe").
TOPONYM_HEADS = _words("""
Ash Ald Alver Bar Beck Bex Black Bram Brad Bren Brom Bur Cal Cam Car Cold Craw Dal Dar Den Dun
Eas Elm Elder Fair Far Fen Gar Glen Graf Grim Had Hal Har Hart Haver Hes Hol Hun Kel Ken Kings
Kir Lang Lin Long Lud Lyn Mal Mar Mel Mid Mor New Nor Old Ost Pen Pem Ray Rix Ros Rother Rud Ry
Sal Sax Shel Stan Sto Sud Sut Tam Ten Thorn Tor Ul Wal War Wen Wes Whit Win Wor Wyn Yar Ab Ack
Ap Bick Bol Chal Chid Cot Cran Dray Ebb Eg Fal Hath Hex Ick Kes Lox Marl Pad Quen Sel Tad Ux
""")
TOPONYM_TAILS = _words("""
ford ton ley bury combe mere wick stead thorpe worth ham by dale hurst cliffe field well more
minster borough chester mouth bourne stow den wich holme leigh ington
""")

# Nouns of reviews, the words a reader uses about a book (not keywords), most common first.
REVIEW_NOUNS = _words("""
story book plot prose pace ending narrator character writing tone dialogue setting protagonist
premise argument structure translation edition sequel conclusion introduction cast heroine subplot
epilogue prologue opening climax worldbuilding research reasoning analysis thesis examples
illustrations diagrams exercises appendix bibliography humour suspense tension atmosphere imagery
metaphor symbolism pacing vocabulary style theme twist villain middle footnotes chapters
storytelling characters descriptions pages narrative
""")

# Note vocabularies, most common first (weights ~1/rank, see demo_text.py).
NOTE_ADJECTIVES = _words("""
good new great short long old clear small strong beautiful interesting slow quiet dark simple
careful brilliant strange original practical dense readable detailed gentle funny sad moving
thoughtful ambitious uneven elegant clever honest vivid rich surprising predictable bleak hopeful
tense lyrical dry witty patient generous rigorous accessible technical classic modern ancient
forgotten hidden silent distant wild cold warm bright bitter sweet lonely restless haunting
unforgettable overlong underrated overrated essential definitive comprehensive concise flawed
perfect charming chilling gripping sprawling intimate epic minimal baroque luminous melancholy
playful furious tender subtle obvious fresh familiar curious fragile stubborn relentless
distributed concurrent immutable functional relational probabilistic quantum cosmic stellar
volcanic tidal nocturnal medieval imperial rural urban coastal awkward bold brave calm cheerful
clumsy confident cruel cynical delicate dreamy eerie fierce fond frantic gloomy graceful grim harsh
heavy hollow humble idle jagged keen lavish loose loud lush mellow messy mild modest muddy narrow
neat noisy odd pale plain polite proud quaint rapid raw rough rude rusty shallow sharp shy sleepy
sly smooth soft sour spare steady steep stern stiff sticky stormy sturdy swift tame tidy tiny tough
vague vast weary wicked wise worn young zealous absurd abrupt earnest eccentric fanciful feverish
frugal gaudy giddy gruff hasty hearty jaunty languid meek morbid nimble peculiar pensive placid
prim quirky rowdy rustic serene shrewd solemn somber sombre spirited staid stoic suave sullen tacky
taut terse timid trite vapid wary wry bewildering breathless dazzling disquieting enchanting
exhausting fascinating harrowing heartfelt hilarious infuriating inventive meandering mesmerising
meticulous overwrought painstaking poignant provocative rambling refreshing riveting scholarly
searing shimmering sobering stirring unsettling uplifting whimsical wrenching
""")

NOTE_VERBS = _words("""
explains shows describes follows explores makes finds takes gives tells builds remembers loses
changes reveals covers introduces argues captures traces connects challenges defends celebrates
mourns imagines reconstructs compares measures rewrites translates hides discovers survives betrays
haunts illuminates dissects unpacks simplifies complicates revisits inverts undermines frustrates
anticipates predicts optimizes replicates compiles sorts proves derives models abandons accepts
admires avoids borrows breaks buries carries catches chases chooses clarifies collects confronts
considers contradicts creates crosses destroys dismisses distorts embraces ends examines exposes
forgets forgives gathers guides ignores inherits interrupts invents joins keeps kills leaves lifts
misses mocks needs notices obeys offers opens outlines owns paints praises protects pursues quotes
raises reaches rebuilds recalls refuses rejects repeats resists restores returns saves seeks sells
shapes shares softens solves spares spoils steals summarises suspects teaches tempts tests
threatens turns uncovers unravels visits wakes wanders warns watches weaves wins
""")

# Sentences of notes; the fields: {n} a keyword noun, {ns} its plural, {an} "a"/"an" and the
# noun ({An} at the start of a sentence); {a} an adjective, {aa} "a"/"an" and the adjective
# ({Aa} capitalised); {r} a review noun; {v} a verb; {p} a place; {f} a first name. Every other
# word is fixed here and must not be a keyword (tests/test_demo.py checks their lexemes).
NOTE_TEMPLATES: tuple[str, ...] = (
    "The {r} {v} {aa} {n}.",
    "{Aa} {r} about {ns} and {ns}.",
    "I liked the {r} but the {r} felt {a}.",
    "Every {r} {v} the {n} of the {n}.",
    "The {r} is {a}, the {r} {a}.",
    "Read it for the {ns}; stay for the {r}.",
    "Not {aa} {r}, but {aa} one.",
    "The chapter on {ns} {v} how {an} works.",
    "Both {a} and {a}: the {r} {v} its {ns}.",
    "Worth it for the {n} alone.",
    "The second half {v} the {n} and the {n}.",
    "{Aa} look at {ns}, {ns} and {ns}.",
    "The {r} never quite {v} the {n}.",
    "Compare with the {a} {r} in the last one.",
    "Its {r} {v} every {n} it touches.",
    "Too {a} in places, yet the {r} is {a}.",
    "Somewhere between {an} and {an}.",
    "The author {v} the {n} with {a} care.",
    "Reread the part where the {n} {v} the {n}.",
    "{An} of {a} {ns} and {a} {ns}.",
    "Recommended by someone fond of {a} {ns}.",
    "Good notes on {ns} and the {a} {n}.",
    "The {a} {n} at the end {v} everything.",
    "Set in {p}, where the {n} {v} the {n}.",
    "{f} {v} the {n} in {p}.",
    "Reminds me of the {n} in {p}.",
    "Skimmed the {r} about {ns}.",
    "Lent to {f}; never came back.",
    "The {r} drags, but the {ns} are {a}.",
    "Half {r}, half {r}, all {a}.",
    "Quotes worth keeping: the {n}, the {n}, the {n}.",
    "Gave up on it twice, then fell for the {n}.",
    "Wish the {r} spent longer on the {ns}.",
    "Would pair nicely with anything about {ns}.",
    "The {r} {v} {aa} {n}, then {v} it.",
    "More {a} than the {r} suggests.",
    "Slow to start; after that the {n} {v} the {r}.",
    "Bought it for the {ns}, kept it for the {r}.",
)
# fmt: on
