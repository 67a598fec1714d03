"""The demo data's tables: real venues, the words names are drawn from, the calendar's mix,
prices, and the well-known rows. Data only; ``generator`` turns it into records."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import NamedTuple

PRICE_TIERS = ("vip", "premium", "standard", "value")
HORIZON_DAYS = 183


# --------------------------------------------------------------------------------------------
# Venues: real places (their seat maps are generated)
# --------------------------------------------------------------------------------------------


class VenueSpec(NamedTuple):
    key: str
    name: str
    address: str
    city: str
    region: str
    country: str
    latitude: float
    longitude: float
    timezone: str
    kind: str  # stadium, arena, amphitheater, theater, hall, club
    scale: float  # relative size within its kind
    sport: str | None  # the home sport, for venues that host sports


# fmt: off
VENUE_SPECS: tuple[VenueSpec, ...] = (
    # key, name, address, city, region, country, latitude, longitude, timezone,
    # kind, scale (size within its kind), sport (hosted at home, if any)
    # Stadiums
    VenueSpec("wembley-stadium", "Wembley Stadium",
              "Wembley, London HA9 0WS", "London", "England", "GB",
              51.556, -0.2796, "Europe/London", "stadium", 1.2, "football"),
    VenueSpec("tokyo-dome", "Tokyo Dome", "1-3-61 Koraku, Bunkyo City", "Tokyo", "Tokyo", "JP",
              35.7056, 139.7519, "Asia/Tokyo", "stadium", 0.9, "baseball"),
    VenueSpec("estadio-azteca", "Estadio Azteca",
              "Calzada de Tlalpan 3465, Coyoacán", "Mexico City", "CDMX", "MX",
              19.3029, -99.1505, "America/Mexico_City", "stadium", 1.1, "football"),
    VenueSpec("melbourne-cricket-ground", "Melbourne Cricket Ground",
              "Brunton Ave, Richmond VIC 3002", "Melbourne", "Victoria", "AU",
              -37.82, 144.9834, "Australia/Melbourne", "stadium", 1.0, "australian football"),
    # Arenas
    VenueSpec("madison-square-garden", "Madison Square Garden",
              "4 Pennsylvania Plaza", "New York", "NY", "US",
              40.7505, -73.9934, "America/New_York", "arena", 1.0, "basketball"),
    VenueSpec("the-o2-arena", "The O2 Arena",
              "Peninsula Square, London SE10 0DX", "London", "England", "GB",
              51.503, 0.0032, "Europe/London", "arena", 1.1, "basketball"),
    VenueSpec("crypto-com-arena", "Crypto.com Arena",
              "1111 S Figueroa St", "Los Angeles", "CA", "US",
              34.043, -118.2673, "America/Los_Angeles", "arena", 1.0, "basketball"),
    VenueSpec("united-center", "United Center", "1901 W Madison St", "Chicago", "IL", "US",
              41.8807, -87.6742, "America/Chicago", "arena", 1.1, "ice hockey"),
    VenueSpec("accor-arena", "Accor Arena", "8 Boulevard de Bercy", "Paris", "Île-de-France", "FR",
              48.8386, 2.3786, "Europe/Paris", "arena", 0.95, "basketball"),
    VenueSpec("ziggo-dome", "Ziggo Dome", "De Passage 100", "Amsterdam", "North Holland", "NL",
              52.3136, 4.9372, "Europe/Amsterdam", "arena", 0.95, None),
    VenueSpec("scotiabank-arena", "Scotiabank Arena", "40 Bay St", "Toronto", "ON", "CA",
              43.6435, -79.3791, "America/Toronto", "arena", 1.0, "ice hockey"),
    VenueSpec("singapore-indoor-stadium", "Singapore Indoor Stadium",
              "2 Stadium Walk", "Singapore", "", "SG",
              1.3006, 103.8745, "Asia/Singapore", "arena", 0.75, "basketball"),
    # Amphitheaters
    VenueSpec("red-rocks-amphitheatre", "Red Rocks Amphitheatre",
              "18300 W Alameda Pkwy", "Morrison", "CO", "US",
              39.6654, -105.2057, "America/Denver", "amphitheater", 0.9, None),
    VenueSpec("hollywood-bowl", "Hollywood Bowl", "2301 N Highland Ave", "Los Angeles", "CA", "US",
              34.1122, -118.3391, "America/Los_Angeles", "amphitheater", 1.3, None),
    # Concert halls
    VenueSpec("royal-albert-hall", "Royal Albert Hall",
              "Kensington Gore, London SW7 2AP", "London", "England", "GB",
              51.5009, -0.1774, "Europe/London", "hall", 1.3, None),
    VenueSpec("sydney-opera-house", "Sydney Opera House", "Bennelong Point", "Sydney", "NSW", "AU",
              -33.8568, 151.2153, "Australia/Sydney", "hall", 1.1, None),
    VenueSpec("elbphilharmonie", "Elbphilharmonie",
              "Platz der Deutschen Einheit 1", "Hamburg", "Hamburg", "DE",
              53.5413, 9.9841, "Europe/Berlin", "hall", 1.0, None),
    # Theaters
    VenueSpec("radio-city-music-hall", "Radio City Music Hall",
              "1260 6th Ave", "New York", "NY", "US",
              40.76, -73.9799, "America/New_York", "theater", 1.8, None),
    VenueSpec("teatro-alla-scala", "Teatro alla Scala",
              "Via Filodrammatici 2", "Milan", "Lombardy", "IT",
              45.4674, 9.1895, "Europe/Rome", "theater", 1.1, None),
    VenueSpec("london-palladium", "London Palladium",
              "8 Argyll St, London W1F 7TF", "London", "England", "GB",
              51.5142, -0.1402, "Europe/London", "theater", 1.2, None),
    VenueSpec("teatro-colon", "Teatro Colón", "Cerrito 628", "Buenos Aires", "CABA", "AR",
              -34.6011, -58.3835, "America/Argentina/Buenos_Aires", "theater", 1.4, None),
    # Clubs
    VenueSpec("the-fillmore", "The Fillmore", "1805 Geary Blvd", "San Francisco", "CA", "US",
              37.784, -122.433, "America/Los_Angeles", "club", 1.2, None),
    VenueSpec("paradiso", "Paradiso", "Weteringschans 6-8", "Amsterdam", "North Holland", "NL",
              52.3622, 4.8838, "Europe/Amsterdam", "club", 1.4, None),
    VenueSpec("koko", "KOKO", "1A Camden High St, London NW1 7JE", "London", "England", "GB",
              51.5347, -0.1382, "Europe/London", "club", 1.3, None),
    VenueSpec("metro-chicago", "Metro", "3730 N Clark St", "Chicago", "IL", "US",
              41.9497, -87.6587, "America/Chicago", "club", 1.0, None),
)
# fmt: on


# --------------------------------------------------------------------------------------------
# Performers: the words of plausible names across genres
# --------------------------------------------------------------------------------------------

FIRST = (
    "Maya",
    "Leo",
    "Amara",
    "Jonas",
    "Sofia",
    "Mateo",
    "Priya",
    "Elias",
    "Noor",
    "Hugo",
    "Ines",
    "Kenji",
    "Zara",
    "Callum",
    "Lucia",
    "Tomas",
    "Aiko",
    "Dario",
    "Freya",
    "Omar",
    "Chloe",
    "Rafael",
    "Yara",
    "Felix",
    "Nadia",
    "Arjun",
    "Elena",
    "Kofi",
    "Isla",
    "Mina",
    "Theo",
    "Valeria",
    "Samir",
    "Astrid",
    "Diego",
    "Hana",
    "Jude",
    "Camila",
    "Ravi",
    "Lena",
)
LAST = (
    "Lindqvist",
    "Okafor",
    "Moreau",
    "Castellano",
    "Haddad",
    "Whitlock",
    "Nakamura",
    "Brennan",
    "Iversen",
    "Delacroix",
    "Mensah",
    "Albright",
    "Varga",
    "Sorensen",
    "Quintero",
    "Achterberg",
    "Kowalski",
    "Fairweather",
    "Rossi",
    "Takeda",
    "Ferreira",
    "Lachance",
    "Osei",
    "Marchetti",
    "Halloran",
    "Devereux",
    "Novak",
    "Santiago",
    "Bergström",
    "Ashdown",
    "Kaur",
    "Mbeki",
)
ADJECTIVES = (
    "Velvet",
    "Neon",
    "Paper",
    "Silver",
    "Electric",
    "Golden",
    "Hollow",
    "Midnight",
    "Crimson",
    "Wild",
    "Glass",
    "Copper",
    "Lunar",
    "Static",
    "Northern",
    "Quiet",
    "Feral",
    "Amber",
    "Restless",
    "Crooked",
    "Little",
    "Burning",
    "Cold",
    "Vivid",
)
NOUNS = (
    "Harbors",
    "Foxes",
    "Lanterns",
    "Echoes",
    "Pilots",
    "Rivers",
    "Engines",
    "Satellites",
    "Wolves",
    "Tides",
    "Orchards",
    "Giants",
    "Ghosts",
    "Machines",
    "Comets",
    "Strangers",
    "Kites",
    "Horses",
    "Atlas",
    "Mirrors",
    "Anthems",
    "Rooftops",
    "Sparrows",
    "Dunes",
)
STAGE_NAMES = (
    "Lumi",
    "Saffira",
    "Orin",
    "Kestrel",
    "Amaru",
    "Velia",
    "Tavi",
    "Soleil",
    "Nyra",
    "Caspian",
    "Ziv",
    "Marlo",
    "Ondine",
    "Juno Ray",
    "Sable",
    "Elio",
)
HIP_HOP_WORDS = (
    "Kairo",
    "Blaze",
    "Tempo",
    "Vega",
    "Nyx",
    "Onyx",
    "Drift",
    "Cipher",
    "Jetset",
    "Reign",
    "Prophet",
    "Halo",
    "Rook",
    "Solo",
)
KPOP_SYLLABLES = ("LU", "MI", "NA", "VI", "KA", "RO", "SE", "ON", "YU", "RA", "XI", "ZE")
CITIES_OF_ORIGIN = (
    "Manchester",
    "Melbourne",
    "Atlanta",
    "Lagos",
    "Montreal",
    "Seoul",
    "Bogotá",
    "Nashville",
    "Berlin",
    "Glasgow",
    "Austin",
    "Stockholm",
    "Cape Town",
    "Lyon",
    "Osaka",
    "Detroit",
)

# How many performers of each music genre; big-venue genres first.
MUSIC_GENRES = {
    "pop": 14,
    "rock": 14,
    "hip-hop": 10,
    "electronic": 10,
    "indie": 10,
    "country": 8,
    "r&b": 8,
    "latin": 8,
    "k-pop": 6,
    "metal": 6,
    "jazz": 8,
    "classical": 8,
}
# Genres that fill a stadium, an arena or an amphitheater; the rest play clubs and halls.
BIG_ROOM_GENRES = (
    "pop",
    "rock",
    "hip-hop",
    "electronic",
    "country",
    "r&b",
    "latin",
    "k-pop",
    "metal",
)
CLUB_GENRES = ("indie", "rock", "electronic", "hip-hop", "jazz", "metal", "r&b")
HALL_GENRES = ("classical", "jazz")

COMEDY_SPECIALS = (
    "Sorry, Not Sorry",
    "Overthinking It",
    "Small Talk",
    "Read the Room",
    "Unfiltered",
    "Adulting Is a Scam",
    "Tell Me More",
    "Out of Office",
)
PRODUCTIONS = (
    ("The Clockmaker's Daughter", "musical"),
    ("Lanterns Over Lisbon", "musical"),
    ("Salt & Starlight", "musical"),
    ("A Winter in Verona", "drama"),
    ("The Glass Orchard", "drama"),
    ("The Last Ferry", "drama"),
    ("Ondine Reimagined", "ballet"),
    ("The Cartographer's Opera", "opera"),
)
FAMILY_SHOWS = (
    ("Cirque Lumière", "circus"),
    ("Dino Trek Live", "family"),
    ("The Bubble Circus", "circus"),
    ("Robot Rumble Live", "family"),
    ("Ice Dreams on Tour", "ice show"),
    ("The Amazing Marvello", "magic"),
)
CONFERENCES = (
    ("CloudScale Summit", "technology"),
    ("FinTech Forward", "finance"),
    ("PyCraft Conference", "technology"),
    ("Design Systems Live", "design"),
)
TEAM_MASCOTS = (
    "Comets",
    "Skyhawks",
    "Ironclads",
    "Voyagers",
    "Thunderbirds",
    "Royals",
    "Sentinels",
    "Mariners",
    "Phantoms",
    "Stallions",
    "Monarchs",
    "Cyclones",
)
AWAY_CITIES = {
    "football": ("Madrid", "Munich", "Milan", "Porto", "Guadalajara", "Monterrey", "Glasgow"),
    "baseball": ("Osaka", "Yokohama", "Nagoya", "Hiroshima", "Sapporo", "Fukuoka"),
    "australian football": ("Adelaide", "Perth", "Brisbane", "Sydney", "Geelong", "Hobart"),
    "basketball": ("Boston", "Miami", "Denver", "Phoenix", "Madrid", "Belgrade", "Manila"),
    "ice hockey": ("Montreal", "Boston", "Detroit", "Vancouver", "Calgary", "Pittsburgh"),
}

# The two performers the well-known events use; fixed, not drawn.
HOT_PERFORMER = (
    "Aurora Vale",
    "pop",
    "Aurora Vale is the pop voice of the decade: four number-one albums, sold-out "
    "world tours and a fan base that crashes websites on sale day.",
)
DEMO_PERFORMER = (
    "Ember & Ash",
    "indie",
    "Ember & Ash are a folk-pop duo from Glasgow whose harmonies fill concert "
    "halls on every continent.",
)


# --------------------------------------------------------------------------------------------
# Events: the calendar's mix, schedule and prices; the well-known rows
# --------------------------------------------------------------------------------------------

# Events per venue over the horizon, and the mix of types each kind of venue hosts.
# Sized so the full set passes a million tickets (about 1.2M) and loads in seconds: real venues
# host many more events, the demo platform sells a part of their calendars.
EVENTS_PER_VENUE = {
    "stadium": 2,
    "arena": 3,
    "amphitheater": 5,
    "theater": 12,
    "hall": 12,
    "club": 14,
}
TYPE_MIX = {
    "stadium": {"concert": 6, "sports": 3, "festival": 2},
    "arena": {"concert": 9, "sports": 4, "comedy": 2, "family": 2, "conference": 2},
    "amphitheater": {"concert": 7, "festival": 2, "comedy": 2},
    "theater": {"theater": 9, "concert": 3, "comedy": 3, "family": 2, "conference": 1},
    "hall": {"concert": 10, "theater": 3, "comedy": 1, "conference": 1},
    "club": {"concert": 8, "comedy": 2},
}
# Local start time, and length.
SCHEDULE = {
    "concert": ((19, 30), timedelta(hours=3)),
    "sports": ((19, 0), timedelta(hours=3)),
    "theater": ((19, 30), timedelta(hours=2, minutes=45)),
    "comedy": ((20, 0), timedelta(hours=2)),
    "festival": ((12, 0), timedelta(days=2, hours=11)),
    "family": ((14, 0), timedelta(hours=2)),
    "conference": ((9, 0), timedelta(days=1, hours=8, minutes=30)),
}
# A typical ticket in US dollars, before tier and popularity.
BASE_PRICE_USD = {
    "concert": 75,
    "sports": 70,
    "theater": 85,
    "comedy": 50,
    "festival": 160,
    "family": 40,
    "conference": 350,
}
VENUE_PRICE_FACTOR = {
    "stadium": 1.25,
    "arena": 1.1,
    "amphitheater": 0.95,
    "theater": 1.0,
    "hall": 0.9,
    "club": 0.5,
}
TIER_FACTOR = {"vip": 2.8, "premium": 1.7, "standard": 1.0, "value": 0.6}
# country -> (currency, units per US dollar, minor-unit exponent)
CURRENCIES = {
    "US": ("USD", 1.0, 2),
    "GB": ("GBP", 0.79, 2),
    "FR": ("EUR", 0.92, 2),
    "NL": ("EUR", 0.92, 2),
    "DE": ("EUR", 0.92, 2),
    "IT": ("EUR", 0.92, 2),
    "JP": ("JPY", 150.0, 0),
    "AU": ("AUD", 1.5, 2),
    "CA": ("CAD", 1.36, 2),
    "MX": ("MXN", 18.0, 2),
    "SG": ("SGD", 1.34, 2),
    "AR": ("ARS", 950.0, 2),
}
TOUR_WORDS = (
    "Horizons",
    "Afterglow",
    "Wildfire",
    "Gravity",
    "Daydream",
    "Heartland",
    "Neon Nights",
    "Echo Chamber",
    "Golden Hour",
    "Undertow",
    "Skylines",
    "Tidal",
)
FESTIVALS = (
    "Solstice Sound Festival",
    "Northern Lights Weekender",
    "Tidewater Music Festival",
    "Summer Static",
    "Goldfield Festival",
    "Wavelength Festival",
)
COMPOSERS = (
    "Mahler",
    "Beethoven",
    "Brahms",
    "Rachmaninoff",
    "Debussy",
    "Shostakovich",
    "Sibelius",
    "Dvořák",
)

# The ids are demo_id("event/<venue key>/<slot>"), written out so docs can quote them (a unit
# test keeps the two spellings equal).
HOT_EVENT_ID = uuid.UUID("3038521a-4098-53b8-a8fa-76a0ca81e121")
DEMO_EVENT_ID = uuid.UUID("03a67087-67cc-5c61-b94c-c5f5e083f9f7")
HOT_EVENT_NAME = "Aurora Vale: The Northern Lights Tour"
DEMO_EVENT_NAME = "Ember & Ash: Live at the Royal Albert Hall"
PINNED_SLOTS = {"wembley-stadium": 59, "royal-albert-hall": 11}

# The small set: this many events, each with about this many tickets (the hot event more).
SMALL_EVENTS = 20
SMALL_ALLOCATION = 210
SMALL_HOT_ALLOCATION = 1000
