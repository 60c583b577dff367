//! Great-circle distances in fixed-point integer arithmetic.
//!
//! Why not `f64`: IEEE 754 makes `+ - * / sqrt` exact-rounded everywhere, but
//! `sin`, `cos` and `asin` come from the platform's libm and may differ in the
//! last bit between platforms and library versions. A hot standby on another
//! machine replaying the log must take the same decision at the exact edge of
//! the impossible-travel rule, so the rule uses integers only: angles are Q30
//! fixed point (radians × 2^30), sine is a Taylor polynomial in i64 with
//! multiplications by reciprocals (no division on the hot path), the
//! haversine is kept in Q60, and the comparison
//! `distance > threshold  ⟺  hav(d/R) > sin²(threshold / 2R)` needs neither
//! `asin` nor a square root. The distance itself (for the audit figures only)
//! is found by bisection on that same comparison.
//!
//! Accuracy: the sine polynomial is within 5e-9 of the true value (a few
//! centimetres on the Earth's surface); the model
//! is a sphere of radius [`EARTH_RADIUS_M`], which is within 0.5 % of the
//! WGS 84 ellipsoid's geodesic distance everywhere.

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: u64 = 6_371_009;

/// Half the Earth's circumference: no two points are farther apart.
pub const HALF_CIRCUMFERENCE_M: u64 = 20_015_115;

/// Micro-degrees in the allowed ranges.
pub const LATITUDE_MICRODEGREES_MAX: i32 = 90_000_000;
pub const LONGITUDE_MICRODEGREES_MAX: i32 = 180_000_000;

const Q30_ONE: i64 = 1 << 30;
/// round(π/2 × 2^30).
pub(crate) const HALF_PI_Q30: i64 = 1_686_629_713;
/// round(π / 180e6 × 2^62): micro-degrees × this >> 32 = Q30 radians.
const RADIANS_PER_MICRODEGREE_Q62: i128 = 80_489_105_090;
/// round(2^62 / 2R): metres × this >> 32 = half the central angle, Q30.
const HALF_ANGLE_PER_METRE_Q62: i128 = 361_927_444_964;
/// round(2^94 / (3.6e9 × 2R)): km/h × ns × this >> 64 = half the central
/// angle travelled, Q30 (km/h × ns / 3.6e9 = metres).
const HALF_ANGLE_PER_KMH_NS_Q94: u128 = 431_796_261_013;
/// round(2^30 / d) for the Horner form of the sine's Taylor series,
/// innermost first: sin x = x(1 - x²/6(1 - x²/20(1 - x²/42(1 - ...)))).
const SINE_RECIPROCALS_Q30: [i64; 6] = [
    6_882_960,   // 1/156 = 1/(12·13)
    9_761_289,   // 1/110 = 1/(10·11)
    14_913_081,  // 1/72 = 1/(8·9)
    25_565_282,  // 1/42 = 1/(6·7)
    53_687_091,  // 1/20 = 1/(4·5)
    178_956_971, // 1/6 = 1/(2·3)
];

/// A coarse location: latitude and longitude in micro-degrees (1e-6 degree,
/// about 11 cm), north and east positive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, bincode::Encode, bincode::Decode)]
pub struct GeoPoint {
    pub latitude_microdegrees: i32,
    pub longitude_microdegrees: i32,
}

impl GeoPoint {
    /// A point, if latitude is within ±90° and longitude within ±180°.
    pub fn new(latitude_microdegrees: i32, longitude_microdegrees: i32) -> Option<GeoPoint> {
        let point = GeoPoint {
            latitude_microdegrees,
            longitude_microdegrees,
        };
        point.is_valid().then_some(point)
    }

    pub fn is_valid(&self) -> bool {
        (-LATITUDE_MICRODEGREES_MAX..=LATITUDE_MICRODEGREES_MAX)
            .contains(&self.latitude_microdegrees)
            && (-LONGITUDE_MICRODEGREES_MAX..=LONGITUDE_MICRODEGREES_MAX)
                .contains(&self.longitude_microdegrees)
    }

    /// Latitude clamped to ±90°, so that arithmetic on a point that skipped
    /// validation stays in range.
    fn latitude(&self) -> i64 {
        i64::from(
            self.latitude_microdegrees
                .clamp(-LATITUDE_MICRODEGREES_MAX, LATITUDE_MICRODEGREES_MAX),
        )
    }

    fn longitude(&self) -> i64 {
        i64::from(
            self.longitude_microdegrees
                .clamp(-LONGITUDE_MICRODEGREES_MAX, LONGITUDE_MICRODEGREES_MAX),
        )
    }
}

/// Micro-degrees (|value| <= 360e6) to Q30 radians.
#[inline]
fn radians_q30(microdegrees: i64) -> i64 {
    ((i128::from(microdegrees) * RADIANS_PER_MICRODEGREE_Q62) >> 32) as i64
}

/// sin(x) in Q30 for x in [0, π/2] (Q30 radians): the Taylor series to x^13
/// in Horner form (truncation error below 1e-9), with multiplications by
/// reciprocals instead of divisions. Every intermediate stays below 2^62:
/// x² < 2.5 × 2^30 and each bracket is in [0, 1].
#[inline]
fn sin_q30(x: i64) -> i64 {
    let x = x.clamp(0, HALF_PI_Q30);
    let x2 = (x * x) >> 30;
    let mut term = Q30_ONE;
    for reciprocal in SINE_RECIPROCALS_Q30 {
        term = Q30_ONE - ((((x2 * term) >> 30) * reciprocal) >> 30);
    }
    ((x * term) >> 30).clamp(0, Q30_ONE)
}

/// Haversine of the central angle between two points, in Q60 (so that short
/// distances keep their precision): `sin²(Δφ/2) + cos φ1 · cos φ2 ·
/// sin²(Δλ/2)`, in [0, 1]. Every term stays below 2^61.
#[inline]
pub(crate) fn haversine_q60(a: &GeoPoint, b: &GeoPoint) -> i64 {
    let latitude_a = a.latitude();
    let latitude_b = b.latitude();
    let latitude_delta = (latitude_a - latitude_b).abs(); // [0, 180°]
    let mut longitude_delta = (a.longitude() - b.longitude()).abs(); // [0, 360°]
    if longitude_delta > 180_000_000 {
        longitude_delta = 360_000_000 - longitude_delta;
    }
    let half_latitude = sin_q30(radians_q30(latitude_delta) / 2);
    let half_longitude = sin_q30(radians_q30(longitude_delta) / 2);
    let cos_a = sin_q30(HALF_PI_Q30 - radians_q30(latitude_a.abs()));
    let cos_b = sin_q30(HALF_PI_Q30 - radians_q30(latitude_b.abs()));
    let first = half_latitude * half_latitude;
    // Pair each cosine with a sine before rounding to Q30, so that neither a
    // small cosine (near the poles) nor a small sine (short hops) is
    // rounded away on its own.
    let second = ((cos_a * half_longitude) >> 30) * ((cos_b * half_longitude) >> 30);
    (first + second).clamp(0, Q30_ONE * Q30_ONE)
}

/// Whether the distance between `a` and `b` is certainly at most the
/// distance whose half central angle is `half_angle_q30`, from a bound that
/// needs no trigonometry: a great-circle distance is at most R × (|Δφ| +
/// |Δλ|) (go along the meridian, then along a parallel no longer than the
/// equator). A margin of a few units keeps rounding out of it; near the
/// bound the caller computes the haversine.
#[inline]
pub(crate) fn certainly_within(a: &GeoPoint, b: &GeoPoint, half_angle_q30: i64) -> bool {
    let latitude_delta = (a.latitude() - b.latitude()).abs();
    let mut longitude_delta = (a.longitude() - b.longitude()).abs();
    if longitude_delta > 180_000_000 {
        longitude_delta = 360_000_000 - longitude_delta;
    }
    radians_q30(latitude_delta + longitude_delta) / 2 + 4 < half_angle_q30
}

/// sin²(θ) in Q60, for θ in [0, π/2] in Q30 radians.
#[inline]
fn sin_squared_q60(angle_q30: i64) -> i64 {
    let sine = sin_q30(angle_q30);
    sine * sine
}

/// Whether the great-circle distance of `haversine` (from [`haversine_q60`])
/// is more than the distance whose half central angle is `half_angle_q30`.
/// Thresholds of half the circumference or more are never exceeded.
#[inline]
pub(crate) fn haversine_exceeds(haversine: i64, half_angle_q30: i64) -> bool {
    if half_angle_q30 >= HALF_PI_Q30 {
        return false;
    }
    haversine > sin_squared_q60(half_angle_q30)
}

/// Half the central angle (Q30 radians) of `metres` along the surface,
/// saturating at π/2.
#[inline]
pub(crate) fn half_angle_of_metres_q30(metres: u64) -> i64 {
    let angle = (i128::from(metres) * HALF_ANGLE_PER_METRE_Q62) >> 32;
    angle.min(i128::from(HALF_PI_Q30)) as i64
}

/// Half the central angle (Q30 radians) covered in `elapsed_ns` at
/// `speed_kmh`, rounded down; saturates at π/2 (farther than any two points).
#[inline]
pub(crate) fn half_angle_of_travel_q30(speed_kmh: u32, elapsed_ns: u64) -> i64 {
    // A validated speed (< 2^17) × elapsed (< 2^64) × the factor (< 2^39)
    // stays below 2^120; checked anyway for a policy built in code.
    let angle = u128::from(speed_kmh)
        .checked_mul(u128::from(elapsed_ns))
        .and_then(|product| product.checked_mul(HALF_ANGLE_PER_KMH_NS_Q94))
        .map_or(u128::MAX, |product| product >> 64);
    angle.min(HALF_PI_Q30 as u128) as i64
}

/// Great-circle distance in metres (rounded down to within a metre), integer
/// arithmetic only. Used for figures; decisions compare haversines directly.
pub fn distance_m(a: &GeoPoint, b: &GeoPoint) -> u64 {
    distance_of_haversine_m(haversine_q60(a, b))
}

/// The largest whole number of metres whose haversine is at most `haversine`.
pub(crate) fn distance_of_haversine_m(haversine: i64) -> u64 {
    // Bisection: at most 25 steps over [0, half circumference].
    let (mut low, mut high) = (0u64, HALF_CIRCUMFERENCE_M);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if sin_squared_q60(half_angle_of_metres_q30(middle)) <= haversine {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(latitude: f64, longitude: f64) -> GeoPoint {
        GeoPoint::new(
            (latitude * 1e6).round() as i32,
            (longitude * 1e6).round() as i32,
        )
        .unwrap()
    }

    /// f64 haversine as the reference (tests only: the engine never uses it).
    fn reference_m(a: &GeoPoint, b: &GeoPoint) -> f64 {
        let radians = |microdegrees: i32| f64::from(microdegrees) * 1e-6_f64.to_radians();
        let (latitude_a, latitude_b) = (
            radians(a.latitude_microdegrees),
            radians(b.latitude_microdegrees),
        );
        let latitude_delta = latitude_b - latitude_a;
        let longitude_delta = radians(b.longitude_microdegrees) - radians(a.longitude_microdegrees);
        let h = (latitude_delta / 2.0).sin().powi(2)
            + latitude_a.cos() * latitude_b.cos() * (longitude_delta / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M as f64 * h.sqrt().asin()
    }

    #[test]
    fn risk_geo_sine_matches_reference() {
        for step in 0..=1_000 {
            let x = HALF_PI_Q30 * step / 1_000;
            let expected = (x as f64 / Q30_ONE as f64).sin();
            let got = sin_q30(x) as f64 / Q30_ONE as f64;
            assert!(
                (got - expected).abs() < 5e-9,
                "sin({x}) = {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn risk_geo_distances_match_reference() {
        let shanghai = point(31.2304, 121.4737);
        let beijing = point(39.9042, 116.4074);
        let singapore = point(1.3521, 103.8198);
        let london = point(51.5074, -0.1278);
        let table = [
            (shanghai, beijing),
            (shanghai, singapore),
            (shanghai, london),
            (point(0.0, 179.9), point(0.0, -179.9)),
            (point(89.9, 0.0), point(89.9, 180.0)),
            (point(-33.8688, 151.2093), point(40.7128, -74.0060)),
            (point(0.0, 0.0), point(0.0, 180.0)),
            (shanghai, point(31.2305, 121.4737)),
            (shanghai, shanghai),
        ];
        for (a, b) in table {
            let got = distance_m(&a, &b) as f64;
            let expected = reference_m(&a, &b);
            assert!(
                (got - expected).abs() <= 2.0 + expected * 1e-6,
                "{a:?} {b:?}: {got} m, expected {expected} m"
            );
            assert_eq!(distance_m(&a, &b), distance_m(&b, &a));
        }
        let shanghai_beijing_km = distance_m(&shanghai, &beijing) / 1_000;
        assert_eq!(shanghai_beijing_km, 1_067);
    }

    #[test]
    fn risk_geo_threshold_comparison_agrees_with_distance() {
        let a = point(31.2304, 121.4737);
        let b = point(39.9042, 116.4074);
        let h = haversine_q60(&a, &b);
        let d = distance_m(&a, &b);
        assert!(haversine_exceeds(h, half_angle_of_metres_q30(d - 5)));
        assert!(!haversine_exceeds(h, half_angle_of_metres_q30(d + 5)));
        assert!(!haversine_exceeds(h, HALF_PI_Q30));
        assert_eq!(half_angle_of_travel_q30(u32::MAX, u64::MAX), HALF_PI_Q30);
        assert_eq!(half_angle_of_travel_q30(1_000, 0), 0);
        // The cheap bound never claims "within" for a distance beyond.
        for (c, e) in [
            (a, b),
            (point(0.0, 179.9), point(0.0, -179.9)),
            (point(60.0, 10.0), point(61.0, 12.0)),
        ] {
            let d = distance_m(&c, &e);
            assert!(!certainly_within(
                &c,
                &e,
                half_angle_of_metres_q30(d.saturating_sub(1))
            ));
            assert!(certainly_within(&c, &e, half_angle_of_metres_q30(d * 3)));
        }
        // Invalid points are clamped, not trusted.
        let wild = GeoPoint {
            latitude_microdegrees: i32::MAX,
            longitude_microdegrees: i32::MIN,
        };
        assert!(!wild.is_valid());
        assert!(distance_m(&wild, &a) <= HALF_CIRCUMFERENCE_M);
    }
}
