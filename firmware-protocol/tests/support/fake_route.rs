//! Realistic fake route data, deterministic from a seed, for size measurements and tests.
//!
//! Shaped after what a District's CIS exports: accounts numbered in blocks, houses numbered up one
//! side of a street and down the other, meter serials bought in lots, short free-text notes drawn
//! from the phrases readers actually use, a few field orders.

use firmware_protocol::message::{FieldOrder, FieldOrderKind, Route, RouteStop, Unit};

/// SplitMix64: tiny, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "José",
    "María",
    "Luis",
    "Guadalupe",
    "Nguyen",
    "Wei",
    "Fatima",
    "Olga",
    "Hiroshi",
    "Priya",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Østergaard",
];
const BUSINESS: &[&str] = &[
    "LLC",
    "Properties LLC",
    "Holdings Inc",
    "Family Trust",
    "Investments",
    "Dental Group",
    "Auto Repair",
    "Church of Christ",
    "Self Storage",
    "HOA",
];
const STREET: &[&str] = &[
    "Orchard",
    "Maple",
    "Oak",
    "Cedar",
    "Pine",
    "Elm",
    "Walnut",
    "Sycamore",
    "Willow",
    "Birch",
    "Hillcrest",
    "Sunset",
    "Park",
    "Lake",
    "River",
    "Valley",
    "Ridge",
    "Meadow",
    "Canyon",
    "Vista",
    "Mission",
    "Lincoln",
    "Washington",
    "Jefferson",
    "Madison",
    "Franklin",
    "Adams",
    "Jackson",
    "Monroe",
    "Grant",
    "Mesa",
    "Alta",
    "Rancho",
    "Camino Real",
    "Paseo del Sol",
];
const SUFFIX: &[&str] = &[
    "St", "Ave", "Dr", "Ln", "Ct", "Way", "Blvd", "Pl", "Rd", "Cir",
];
const LOCATION: &[&str] = &[
    "front left",
    "front right",
    "left of driveway",
    "right of driveway",
    "in sidewalk",
    "behind gate",
    "back yard",
    "near hydrant",
    "under bushes",
    "in driveway",
    "side yard left",
    "side yard right",
    "by mailbox",
    "in parkway strip",
    "alley side",
    "front of garage",
    "under rock landscaping",
    "lid cracked, lift carefully",
    "meter in vault",
    "across street",
];
const HAZARD: &[&str] = &[
    "dog in yard",
    "large dog",
    "bees in box",
    "aggressive dog, call first",
    "ants in box",
    "snakes seen",
    "deep box",
    "locked gate, code 1234",
    "uneven ground",
    "poison oak",
];
const INSTRUCTIONS: &[&str] = &[
    "customer disputes last bill, verify read",
    "high read last cycle, check for leak",
    "post 48-hour notice on door",
    "shut off for non-payment, lock valve",
    "turn on, new tenant moving in",
    "replace stopped meter",
    "check register, possible tamper",
];

/// A route of `stops` stops for cycle 2026-11.
pub fn route(stops: u32, seed: u64) -> Route {
    let mut rng = Rng::new(seed);
    let mut account = 100_000 + rng.below(800_000);
    let mut street = rng.pick(STREET);
    let mut suffix = rng.pick(SUFFIX);
    let mut house = 100 + rng.below(3_000);
    let mut serial_lot = 10_000_000 + rng.below(80_000_000);
    let read_day = 20_732u32; // 2026-10-05
    let mut v = Vec::with_capacity(stops as usize);
    for i in 0..stops {
        if rng.chance(4) {
            street = rng.pick(STREET);
            suffix = rng.pick(SUFFIX);
            house = 100 + rng.below(3_000);
        } else {
            house += 2 + 2 * rng.below(6);
        }
        account += 1 + rng.below(7);
        let commercial = rng.chance(8);
        let customer_name = if commercial {
            format!("{} {}", rng.pick(LAST), rng.pick(BUSINESS))
        } else if rng.chance(30) {
            format!(
                "{} & {} {}",
                rng.pick(FIRST),
                rng.pick(FIRST),
                rng.pick(LAST)
            )
        } else {
            format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
        };
        let service_address = if rng.chance(10) {
            format!("{house} {street} {suffix} Apt {}", 1 + rng.below(24))
        } else {
            format!("{house} {street} {suffix}")
        };
        // Meters come in lots of consecutive serials; a third were replaced one by one.
        let serial = if rng.chance(35) {
            10_000_000 + rng.below(89_999_999)
        } else {
            serial_lot += 1 + rng.below(3);
            serial_lot
        };
        let (dials, unit, multiplier) = if commercial {
            (6, Unit::Gal, 10)
        } else {
            (
                *[4u8, 5, 6].get(rng.below(3) as usize).unwrap_or(&6),
                Unit::Hcf,
                1,
            )
        };
        let modulus = 10u64.pow(u32::from(dials));
        let previous_reading = rng.below(modulus);
        let usage = if commercial {
            40 + rng.below(400)
        } else {
            3 + rng.below(25)
        };
        let low_limit = (previous_reading + usage / 3) % modulus;
        let high_limit = (previous_reading + usage * 3 + 10) % modulus;
        // The window is 19 days: about two thirds of a month's use more by its last day.
        let low_limit_last = (previous_reading + usage / 3 + usage / 5) % modulus;
        let high_limit_last = (previous_reading + usage * 5 + 10) % modulus;
        let field_orders = if rng.chance(3) {
            let kind = FieldOrderKind::from_u8(1 + rng.below(5) as u8);
            vec![FieldOrder {
                order_id: 50_000 + u64::from(i) * 3 + rng.below(3),
                kind,
                instructions: rng.pick(INSTRUCTIONS).to_string(),
            }]
        } else {
            Vec::new()
        };
        v.push(RouteStop {
            sequence: (i + 1) * 10,
            account_id: format!("{account:07}-{:02}", 1 + rng.below(3)),
            customer_name,
            service_address,
            meter_id: format!("{}{serial}", if rng.chance(70) { "S" } else { "B" }),
            location_note: if rng.chance(60) {
                rng.pick(LOCATION).to_string()
            } else {
                String::new()
            },
            hazard_note: if rng.chance(10) {
                rng.pick(HAZARD).to_string()
            } else {
                String::new()
            },
            dials,
            decimals: 0,
            multiplier,
            unit,
            previous_reading,
            previous_read_date: read_day + rng.below(20) as u32,
            low_limit,
            high_limit,
            field_orders,
            low_limit_last,
            high_limit_last,
        });
    }
    Route {
        route_id: "R07".into(),
        cycle_id: "2026-11".into(),
        window_from: 20_758,
        window_to: 20_777,
        stops: v,
    }
}
