//! Sets of completion indexes in the compressed form Kubernetes writes to
//! `status.completedIndexes` and `status.failedIndexes`: ordered, merged intervals printed as
//! `1,3-5,7` (two neighbours print as `1,2`, as Kubernetes prints them).

use std::fmt;

/// An ordered set of completion indexes kept as disjoint, non-adjacent intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Indexes {
    /// `(first, last)`, inclusive, ordered, never touching.
    intervals: Vec<(i32, i32)>,
}

impl Indexes {
    /// The empty set.
    pub fn new() -> Indexes {
        Indexes::default()
    }

    /// Reads a status string, keeping only indexes below `completions` (a Job whose
    /// completions shrank drops the indexes beyond them, as Kubernetes does). Malformed
    /// pieces are skipped rather than failing the whole Job.
    pub fn parse(text: &str, completions: i32) -> Indexes {
        let mut set = Indexes::new();
        for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = match piece.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (piece.parse::<i32>(), piece.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (first, last) else {
                continue;
            };
            if first < 0 || first > last || first >= completions {
                continue;
            }
            set.insert_range(first, last.min(completions - 1));
        }
        set
    }

    /// Adds one index.
    pub fn insert(&mut self, index: i32) {
        self.insert_range(index, index);
    }

    /// Adds `first..=last`.
    pub fn insert_range(&mut self, first: i32, last: i32) {
        let mut merged = (first, last);
        let mut kept = Vec::with_capacity(self.intervals.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.intervals {
            if b.saturating_add(1) < merged.0 {
                kept.push((a, b));
            } else if merged.1.saturating_add(1) < a {
                if !placed {
                    kept.push(merged);
                    placed = true;
                }
                kept.push((a, b));
            } else {
                merged = (merged.0.min(a), merged.1.max(b));
            }
        }
        if !placed {
            kept.push(merged);
        }
        self.intervals = kept;
    }

    /// Every index of `other` added to this set.
    pub fn union(&self, other: &Indexes) -> Indexes {
        let mut out = self.clone();
        for &(a, b) in &other.intervals {
            out.insert_range(a, b);
        }
        out
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: i32) -> bool {
        let at = self.intervals.partition_point(|&(_, last)| last < index);
        self.intervals
            .get(at)
            .is_some_and(|&(first, _)| first <= index)
    }

    /// How many indexes the set holds.
    pub fn len(&self) -> usize {
        self.intervals
            .iter()
            .map(|&(a, b)| (b - a) as usize + 1)
            .sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The lowest `count` indexes in `0..completions` that are not in the set.
    pub fn first_missing(&self, count: usize, completions: i32) -> Vec<i32> {
        let mut out = Vec::with_capacity(count);
        let mut candidate = 0;
        for &(first, last) in &self.intervals {
            while candidate < first && candidate < completions && out.len() < count {
                out.push(candidate);
                candidate += 1;
            }
            candidate = candidate.max(last + 1);
        }
        while candidate < completions && out.len() < count {
            out.push(candidate);
            candidate += 1;
        }
        out
    }
}

impl FromIterator<i32> for Indexes {
    fn from_iter<T: IntoIterator<Item = i32>>(iter: T) -> Indexes {
        let mut set = Indexes::new();
        for index in iter {
            set.insert(index);
        }
        set
    }
}

impl fmt::Display for Indexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(first, last)) in self.intervals.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match last - first {
                0 => write!(f, "{first}")?,
                1 => write!(f, "{first},{last}")?,
                _ => write!(f, "{first}-{last}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_print_as_kubernetes_prints_them() {
        let cases: &[(&[i32], &str)] = &[
            (&[], ""),
            (&[0], "0"),
            (&[0, 1], "0,1"),
            (&[0, 1, 2], "0-2"),
            (&[5, 1, 3, 2, 9], "1-3,5,9"),
            (&[7, 7, 7], "7"),
        ];
        for (indexes, text) in cases {
            let set: Indexes = indexes.iter().copied().collect();
            assert_eq!(set.to_string(), *text, "{indexes:?}");
            assert_eq!(set.len(), {
                let mut v = indexes.to_vec();
                v.sort();
                v.dedup();
                v.len()
            });
        }
    }

    #[test]
    fn parsing_drops_indexes_beyond_completions_and_garbage() {
        let cases = [
            ("1-3,5,9", 10, "1-3,5,9"),
            ("1-3,5,9", 6, "1-3,5"),
            ("0-9", 4, "0-3"),
            ("0,1,2", 10, "0-2"),
            ("x,2,3-y,-1,4", 10, "2,4"),
            ("", 3, ""),
        ];
        for (text, completions, expected) in cases {
            assert_eq!(
                Indexes::parse(text, completions).to_string(),
                expected,
                "{text} / {completions}"
            );
        }
    }

    #[test]
    fn membership_and_union_follow_the_intervals() {
        let a = Indexes::parse("1-3,8", 10);
        let b = Indexes::parse("4,6", 10);
        let both = a.union(&b);
        assert_eq!(both.to_string(), "1-4,6,8");
        for (index, present) in [
            (0, false),
            (1, true),
            (4, true),
            (5, false),
            (6, true),
            (8, true),
            (9, false),
        ] {
            assert_eq!(both.contains(index), present, "{index}");
        }
    }

    #[test]
    fn missing_indexes_come_lowest_first() {
        let set = Indexes::parse("0,2-3", 10);
        assert_eq!(set.first_missing(3, 10), vec![1, 4, 5]);
        assert_eq!(set.first_missing(10, 6), vec![1, 4, 5]);
        assert_eq!(Indexes::new().first_missing(2, 10), vec![0, 1]);
        assert!(Indexes::parse("0-4", 5).first_missing(3, 5).is_empty());
    }
}
