//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), parsed exactly: the value is kept
//! as an integer times a power of ten, never as a float.

use std::cmp::Ordering;
use std::fmt;

/// The regular expression Kubernetes names when a quantity is malformed.
pub const QUANTITY_FORMAT: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// A parsed quantity: `mantissa * 10^exponent`, exact.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

/// A string that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Does not match the quantity grammar (Kubernetes' `ErrFormatWrong`).
    #[error("quantities must match the regular expression '{QUANTITY_FORMAT}'")]
    Format {
        /// The text.
        text: String,
    },
    /// The number is fine but the suffix is not one Kubernetes knows (`ErrSuffix`).
    #[error("unable to parse quantity's suffix")]
    Suffix {
        /// The text.
        text: String,
    },
    /// The value does not fit in 128 bits.
    #[error("quantity {text:?} is too large")]
    TooLarge {
        /// The text.
        text: String,
    },
}

impl Quantity {
    /// Parses a quantity as the API server does.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let format = || QuantityError::Format {
            text: text.to_owned(),
        };
        let too_large = || QuantityError::TooLarge {
            text: text.to_owned(),
        };
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            Some(_) => (false, text),
            None => return Err(format()),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(format());
        }
        // The suffix must match `[eEinumkKMGTP]*[-+]?[0-9]*` to be well formed at all.
        let letters_end = suffix
            .find(|c: char| !"eEinumkKMGTP".contains(c))
            .unwrap_or(suffix.len());
        let (_, tail) = suffix.split_at(letters_end);
        let tail_digits = tail.strip_prefix(['-', '+']).unwrap_or(tail);
        if !tail_digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format());
        }
        let (binary_power, decimal_exponent): (u32, i32) = match suffix {
            "" => (0, 0),
            "Ki" => (1, 0),
            "Mi" => (2, 0),
            "Gi" => (3, 0),
            "Ti" => (4, 0),
            "Pi" => (5, 0),
            "Ei" => (6, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            s if s.starts_with(['e', 'E']) => {
                let exponent = &s[1..];
                let digits = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(QuantityError::Suffix {
                        text: text.to_owned(),
                    });
                }
                let value: i32 = exponent.parse().map_err(|_| too_large())?;
                (0, value)
            }
            _ => {
                return Err(QuantityError::Suffix {
                    text: text.to_owned(),
                });
            }
        };
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| too_large())?
        };
        let fraction_len = i32::try_from(fraction.len()).map_err(|_| too_large())?;
        let exponent = decimal_exponent
            .checked_sub(fraction_len)
            .ok_or_else(too_large)?;
        for _ in 0..binary_power {
            mantissa = mantissa.checked_mul(1024).ok_or_else(too_large)?;
        }
        if negative {
            mantissa = -mantissa;
        }
        Ok(Quantity { mantissa, exponent }.normalized())
    }

    fn normalized(mut self) -> Self {
        if self.mantissa == 0 {
            self.exponent = 0;
            return self;
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.exponent += 1;
        }
        self
    }

    /// The value scaled by `10^scale`, rounded up (toward positive infinity), as Kubernetes'
    /// `ScaledValue` rounds. `None` when it does not fit.
    pub fn scaled_ceil(&self, scale: i32) -> Option<i128> {
        let shift = self.exponent.checked_add(scale)?;
        if shift >= 0 {
            let factor = 10i128.checked_pow(u32::try_from(shift).ok()?)?;
            self.mantissa.checked_mul(factor)
        } else {
            let divisor = match 10i128.checked_pow(u32::try_from(-shift).ok()?) {
                Some(d) => d,
                // Smaller than any representable unit: rounds to 0 or 1.
                None => return Some(i128::from(self.mantissa > 0)),
            };
            let quotient = self.mantissa.div_euclid(divisor);
            let remainder = self.mantissa.rem_euclid(divisor);
            Some(if remainder > 0 {
                quotient + 1
            } else {
                quotient
            })
        }
    }

    /// The value in thousandths (CPU millicores), rounded up: `0.1m` is 1.
    pub fn millis(&self) -> Option<i128> {
        self.scaled_ceil(3)
    }

    /// The value as a whole number (bytes), rounded up.
    pub fn value(&self) -> Option<i128> {
        self.scaled_ceil(0)
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |m: i128| m.signum();
        if sign(self.mantissa) != sign(other.mantissa) {
            return sign(self.mantissa).cmp(&sign(other.mantissa));
        }
        // Same sign: bring both to the smaller exponent; if that overflows, the one with the
        // larger exponent has the larger magnitude (both are normalized).
        let low = self.exponent.min(other.exponent);
        let lift = |q: &Quantity| {
            u32::try_from(q.exponent - low)
                .ok()
                .and_then(|p| 10i128.checked_pow(p))
                .and_then(|f| q.mantissa.checked_mul(f))
        };
        match (lift(self), lift(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => {
                let by_magnitude = self.exponent.cmp(&other.exponent);
                if self.mantissa < 0 {
                    by_magnitude.reverse()
                } else {
                    by_magnitude
                }
            }
        }
    }
}

impl fmt::Display for Quantity {
    /// A plain decimal rendering (`1.5`, `1610612736`), for messages and tests.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exponent >= 0 {
            write!(f, "{}", self.mantissa)?;
            for _ in 0..self.exponent {
                f.write_str("0")?;
            }
            Ok(())
        } else {
            let digits = self.mantissa.unsigned_abs().to_string();
            let point = (-self.exponent) as usize;
            let sign = if self.mantissa < 0 { "-" } else { "" };
            if digits.len() > point {
                let (int, frac) = digits.split_at(digits.len() - point);
                write!(f, "{sign}{int}.{frac}")
            } else {
                write!(f, "{sign}0.{}{digits}", "0".repeat(point - digits.len()))
            }
        }
    }
}

/// CPU in millicores (`"500m"` -> 500, `"1.5"` -> 1500).
pub fn cpu_millis(text: &str) -> Result<i128, QuantityError> {
    let quantity = Quantity::parse(text)?;
    quantity.millis().ok_or(QuantityError::TooLarge {
        text: text.to_owned(),
    })
}

/// Memory or storage in bytes (`"1Gi"` -> 1073741824, `"1G"` -> 1000000000).
pub fn bytes(text: &str) -> Result<i128, QuantityError> {
    let quantity = Quantity::parse(text)?;
    quantity.value().ok_or(QuantityError::TooLarge {
        text: text.to_owned(),
    })
}
