//! One instance quota shared by every endpoint that uses its instance type (trap 2 across a
//! fleet). The quota is per account, region and instance type, and AWS fails a scale-out past it
//! whole: "utilization + delta > limit" fails, there is no partial scale-out (docs/aws-behaviour.md
//! §5.4). Clamping each endpoint's MaxCapacity to the whole quota lets two endpoints each ask
//! for the same free instances, and both fail for as long as they ask.
//!
//! The rule: every endpoint asyncscale shares the quota for gets a cap (its MaxCapacity), and the
//! caps together never exceed what the quota leaves after the instances nobody shares (endpoints
//! asyncscale does not manage, or manages with another quota policy). So whatever scale-outs
//! Application Auto Scaling makes within the caps, the quota holds, and none fails.
//!
//! The split is max-min fair by instances held, not by headroom: every cap is raised to one
//! common level, but never below what the endpoint holds or its minCapacity and never above its
//! maxCapacity. Instances left over at the level (fewer than the endpoints still below their
//! maxCapacity) go one each to the endpoints with a backlog, then in resource id order. Why by
//! level: an endpoint that scales out within its cap changes no other endpoint's cap, so a fleet
//! scaling within its shares causes no MaxCapacity writes; caps move only when instances are
//! released (a scale-in lets the others grow) or the set of endpoints changes.

use std::collections::{BTreeMap, BTreeSet};

/// One endpoint variant holding instances of the instance type.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// Its Application Auto Scaling resource id: the order of the leftover instances.
    pub resource_id: String,
    /// Instances it holds or is being given: the larger of the variant's current and desired
    /// instance counts (instances being provisioned count against the quota too).
    pub instances: u32,
    /// Its bounds when asyncscale shares the quota for it; `None` for every other endpoint, whose
    /// instances are simply in use.
    pub shared: Option<Bounds>,
    /// It has requests waiting (or its scale-out alarm fires): first for a leftover instance.
    pub has_backlog: bool,
    /// Its endpoint does not exist (not created yet, or deleted by hand) but its resource shares:
    /// it holds nothing and keeps its part for when the endpoint comes back. SageMaker creates an
    /// endpoint with at least one instance, so its floor is one (at most its maxCapacity; its
    /// own minCapacity protects nothing before its target exists), granted only after every
    /// existing endpoint's minimum, and it gets a leftover instance last.
    pub prospective: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min_capacity: u32,
    pub max_capacity: u32,
}

/// The split of one quota.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub quota: u32,
    /// Instances held by every endpoint of the type.
    pub in_use: u32,
    /// Endpoints sharing the quota (the existing ones: not the prospective).
    pub endpoints: usize,
    /// The prospective holders' resource ids: their endpoints do not exist.
    pub prospective: BTreeSet<String>,
    /// Instances held by endpoints that do not share it.
    pub elsewhere: u32,
    /// Instances held by the endpoints sharing it.
    pub held_by_sharing: u32,
    /// The cap of each endpoint that shares the quota, by resource id.
    pub caps: BTreeMap<String, u32>,
    /// What each endpoint that shares the quota holds, by resource id.
    pub held: BTreeMap<String, u32>,
    /// Endpoints whose minCapacity asks for more instances than they hold and than the quota
    /// leaves: their minimum is not granted (raising it would fail in AWS, or take the others'
    /// instances), and their cap may be below it.
    pub min_unmet: BTreeSet<String>,
}

impl Split {
    /// Why the cap of `resource_id` is what it is, for QuotaClamped's message.
    pub fn explain(&self, resource_id: &str) -> Option<String> {
        let cap = self.caps.get(resource_id)?;
        let endpoints = match self.endpoints {
            1 => "1 endpoint".to_string(),
            n => format!("{n} endpoints"),
        };
        let in_use = match self.elsewhere {
            0 => format!("in use by {endpoints}"),
            n => format!(
                "in use ({} by the {endpoints} sharing it, {n} by other endpoints)",
                self.held_by_sharing
            ),
        };
        // What the others' caps hold back beyond what they hold: instances nobody uses now
        // that this endpoint still cannot have.
        let reserved: u32 = self
            .caps
            .iter()
            .filter(|(id, _)| id.as_str() != resource_id)
            .map(|(id, cap)| cap.saturating_sub(self.held.get(id).copied().unwrap_or(0)))
            .sum();
        let absent: Vec<&str> = self
            .prospective
            .iter()
            .filter(|id| id.as_str() != resource_id && self.caps.get(*id).is_some_and(|c| *c > 0))
            .map(String::as_str)
            .collect();
        let absent = match absent.as_slice() {
            [] => String::new(),
            ids => format!(
                " (including {}, whose endpoint does not exist: its resource keeps a share for its return until the resource is deleted)",
                ids.join(", ")
            ),
        };
        let reserved = match reserved {
            0 => String::new(),
            n => format!("; {n} more reserved by the other sharing endpoints' caps{absent}"),
        };
        Some(format!(
            "{} of {} {in_use}{reserved}; this endpoint may grow to {cap}",
            self.in_use, self.quota
        ))
    }
}

/// Splits `quota` between the holders that share it.
pub fn split(quota: u32, holders: &[Holder]) -> Split {
    let in_use: u32 = holders.iter().map(|h| h.instances).sum();
    let unshared: u32 = holders
        .iter()
        .filter(|h| h.shared.is_none())
        .map(|h| h.instances)
        .sum();
    let available = quota.saturating_sub(unshared);
    // What each sharing endpoint holds stays its own. A minimum above that asks for instances, as
    // a scale-out does: granted in resource id order while what is held and granted fits.
    // Existing endpoints' minimums first: a prospective holder's floor waits for them.
    let mut sharing: Vec<&Holder> = holders.iter().filter(|h| h.shared.is_some()).collect();
    sharing.sort_by(|a, b| (a.prospective, &a.resource_id).cmp(&(b.prospective, &b.resource_id)));
    let held_by_sharing: u32 = sharing.iter().map(|h| h.instances).sum();
    // Instances held above a maxCapacity are being scaled in by AWS: counted as the level counts
    // them (up to the maxCapacity), so a minimum granted now stays granted as they go.
    let mut committed: u64 = sharing
        .iter()
        .map(|h| {
            let b = h.shared.expect("sharing");
            u64::from(h.instances.min(b.max_capacity))
        })
        .sum();
    let mut min_unmet = BTreeSet::new();
    let mut shared: Vec<(&Holder, u32, u32)> = sharing
        .into_iter()
        .map(|h| {
            let b = h.shared.expect("sharing");
            let held = h.instances.min(b.max_capacity);
            let min = if h.prospective { 1 } else { b.min_capacity };
            let wanted = h.instances.max(min).min(b.max_capacity);
            let demand = u64::from(wanted.saturating_sub(held));
            let floor = if demand == 0 || committed + demand <= u64::from(available) {
                committed += demand;
                wanted
            } else {
                if !h.prospective {
                    min_unmet.insert(h.resource_id.clone());
                }
                held
            };
            (h, floor, b.max_capacity)
        })
        .collect();
    // The highest level whose caps fit: the sum of caps grows with the level, so bisect.
    let sum_at = |level: u32| -> u64 {
        shared
            .iter()
            .map(|&(_, floor, max)| u64::from(level.clamp(floor, max)))
            .sum()
    };
    let (mut low, mut high) = (0u32, shared.iter().map(|s| s.2).max().unwrap_or(0));
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if sum_at(mid) <= u64::from(available) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let level = low;
    let mut leftover = u64::from(available).saturating_sub(sum_at(level));
    shared.sort_by(|a, b| {
        (a.0.prospective, !a.0.has_backlog, &a.0.resource_id).cmp(&(
            b.0.prospective,
            !b.0.has_backlog,
            &b.0.resource_id,
        ))
    });
    let caps = shared
        .iter()
        .map(|&(h, floor, max)| {
            let mut cap = level.clamp(floor, max);
            // Endpoints at the level and below their maxCapacity may take one more.
            if leftover > 0 && floor <= level && level < max {
                cap += 1;
                leftover -= 1;
            }
            (h.resource_id.clone(), cap)
        })
        .collect();
    Split {
        quota,
        in_use,
        endpoints: holders
            .iter()
            .filter(|h| h.shared.is_some() && !h.prospective)
            .count(),
        prospective: holders
            .iter()
            .filter(|h| h.shared.is_some() && h.prospective)
            .map(|h| h.resource_id.clone())
            .collect(),
        elsewhere: unshared,
        held_by_sharing,
        caps,
        held: holders
            .iter()
            .filter(|h| h.shared.is_some())
            .map(|h| (h.resource_id.clone(), h.instances))
            .collect(),
        min_unmet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shared(id: &str, instances: u32, min: u32, max: u32) -> Holder {
        Holder {
            resource_id: id.into(),
            instances,
            shared: Some(Bounds {
                min_capacity: min,
                max_capacity: max,
            }),
            has_backlog: false,
            prospective: false,
        }
    }

    fn other(id: &str, instances: u32) -> Holder {
        Holder {
            resource_id: id.into(),
            instances,
            shared: None,
            has_backlog: false,
            prospective: false,
        }
    }

    /// The scenario: two endpoints at one instance each, quota 4. Clamping gave each a
    /// MaxCapacity of 4 and both failed; shared, each may grow to 2.
    #[test]
    fn two_endpoints_at_one_instance_share_a_quota_of_four() {
        let split = split(4, &[shared("a", 1, 0, 20), shared("b", 1, 0, 20)]);
        assert_eq!(split.caps["a"], 2);
        assert_eq!(split.caps["b"], 2);
        assert_eq!(
            split.explain("a").unwrap(),
            "2 of 4 in use by 2 endpoints; 1 more reserved by the other sharing endpoints' caps; this endpoint may grow to 2"
        );
    }

    #[test]
    fn instances_of_other_endpoints_come_off_the_quota_first() {
        let split = split(
            10,
            &[
                shared("a", 0, 0, 20),
                shared("b", 0, 0, 20),
                shared("c", 0, 0, 20),
                other("unmanaged", 4),
            ],
        );
        assert_eq!(split.caps.values().sum::<u32>(), 6);
        assert_eq!(split.caps.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
        assert_eq!(
            split.explain("a").unwrap(),
            "4 of 10 in use (0 by the 3 endpoints sharing it, 4 by other endpoints); 4 more reserved by the other sharing endpoints' caps; this endpoint may grow to 2"
        );
    }

    /// Four sharing endpoints and one instance held elsewhere, quota 4: the fourth may grow to 0
    /// although only 1 instance is in use; the rest are reserved by the others' caps, and the
    /// explanation says so rather than "in use".
    #[test]
    fn a_cap_of_zero_says_what_is_reserved_and_what_is_held() {
        let split = split(
            4,
            &[
                shared("a", 0, 0, 4),
                shared("b", 0, 0, 4),
                shared("c", 0, 0, 4),
                shared("d", 0, 0, 4),
                other("unmanaged", 1),
            ],
        );
        assert_eq!(split.caps.values().sum::<u32>(), 3);
        assert_eq!(split.caps["d"], 0);
        assert_eq!(
            split.explain("d").unwrap(),
            "1 of 4 in use (0 by the 4 endpoints sharing it, 1 by other endpoints); 3 more reserved by the other sharing endpoints' caps; this endpoint may grow to 0"
        );
    }

    #[test]
    fn a_leftover_instance_goes_to_an_endpoint_with_backlog_first() {
        let mut waiting = shared("z", 0, 0, 20);
        waiting.has_backlog = true;
        let with_backlog = split(3, &[shared("a", 0, 0, 20), shared("b", 0, 0, 20), waiting]);
        assert_eq!(with_backlog.caps["z"], 1);
        assert_eq!(with_backlog.caps.values().sum::<u32>(), 3);
        let by_id = split(3, &[shared("a", 0, 0, 20), shared("b", 0, 0, 20)]);
        assert_eq!((by_id.caps["a"], by_id.caps["b"]), (2, 1), "then by id");
    }

    #[test]
    fn a_cap_is_never_below_what_an_endpoint_holds() {
        // Another tool already took more than the quota leaves: nothing is taken away, and a
        // minimum that asks for more is not granted.
        let split = split(
            4,
            &[shared("a", 3, 0, 20), shared("b", 0, 2, 20), other("x", 2)],
        );
        assert_eq!(split.caps["a"], 3);
        assert_eq!(split.caps["b"], 0);
        assert!(split.min_unmet.contains("b"));
    }

    /// Two minimums of 3 in a quota of 4: the first (by id) is granted, the second waits, and
    /// the caps never add up past the quota (the break-test's repro).
    #[test]
    fn minimums_that_do_not_fit_together_are_granted_in_order() {
        let split = split(4, &[shared("m1", 0, 3, 10), shared("m2", 0, 3, 10)]);
        assert_eq!(split.caps["m1"], 3);
        assert!(split.caps["m2"] <= 1);
        assert!(split.caps.values().sum::<u32>() <= 4);
        assert_eq!(split.min_unmet.iter().collect::<Vec<_>>(), ["m2"]);
    }

    fn prospective(id: &str, min: u32, max: u32) -> Holder {
        Holder {
            prospective: true,
            ..shared(id, 0, min, max)
        }
    }

    /// An endpoint that does not exist keeps one instance for when it comes back (SageMaker
    /// creates none with fewer), after every existing endpoint's minimum; its own minimum asks
    /// for nothing, and the explanation names it.
    #[test]
    fn a_missing_endpoint_keeps_one_instance_after_the_existing_minimums() {
        let split = split(
            4,
            &[
                prospective("endpoint/aaa-typo/variant/AllTraffic", 2, 4),
                shared("endpoint/llm/variant/AllTraffic", 1, 1, 4),
                shared("endpoint/ocr/variant/AllTraffic", 0, 2, 4),
            ],
        );
        assert!(split.min_unmet.is_empty(), "{split:?}");
        assert_eq!(
            split.caps.values().copied().collect::<Vec<_>>(),
            [1, 1, 2],
            "aaa-typo, llm, ocr"
        );
        assert_eq!(
            split.endpoints, 2,
            "the missing one is not counted as sharing"
        );
        assert_eq!(
            split.explain("endpoint/llm/variant/AllTraffic").unwrap(),
            "1 of 4 in use by 2 endpoints; 3 more reserved by the other sharing endpoints' caps (including endpoint/aaa-typo/variant/AllTraffic, whose endpoint does not exist: its resource keeps a share for its return until the resource is deleted); this endpoint may grow to 1"
        );
    }

    /// The instance it keeps comes before a leftover for an existing endpoint: when it comes
    /// back with one, the caps still fit.
    #[test]
    fn a_missing_endpoint_comes_back_within_the_caps() {
        let split = split(
            4,
            &[
                shared("a", 3, 0, 4),
                shared("b", 0, 0, 4),
                prospective("x", 0, 4),
            ],
        );
        assert_eq!(split.caps.values().copied().collect::<Vec<_>>(), [3, 0, 1]);
        // With room, it takes its part of the level like any endpoint, and no leftover.
        let split = super::split(7, &[shared("a", 0, 0, 4), prospective("x", 0, 4)]);
        assert_eq!(split.caps.values().copied().collect::<Vec<_>>(), [4, 3]);
    }

    #[test]
    fn a_cap_is_never_above_max_capacity_and_what_one_cannot_use_goes_to_the_others() {
        let split = split(10, &[shared("a", 0, 0, 1), shared("b", 0, 0, 20)]);
        assert_eq!((split.caps["a"], split.caps["b"]), (1, 9));
    }

    fn holders() -> impl Strategy<Value = Vec<Holder>> {
        proptest::collection::vec(
            (0u32..8, 0u32..4, 1u32..12, any::<bool>(), any::<bool>()),
            0..8,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (instances, min, extra, is_shared, backlog))| Holder {
                    resource_id: format!("endpoint/e{i}/variant/AllTraffic"),
                    instances,
                    shared: is_shared.then_some(Bounds {
                        min_capacity: min,
                        max_capacity: min + extra,
                    }),
                    has_backlog: backlog,
                    prospective: false,
                })
                .collect()
        })
    }

    /// What a cap never goes below: what the endpoint holds, and its minimum when granted.
    fn floor(h: &Holder, split: &Split) -> u32 {
        let b = h.shared.unwrap();
        if split.min_unmet.contains(&h.resource_id) {
            h.instances.min(b.max_capacity)
        } else {
            h.instances.max(b.min_capacity).min(b.max_capacity)
        }
    }

    proptest! {
        /// Whatever scale-outs happen within the caps, the quota holds, unless what endpoints
        /// already hold (or must hold) is over it, and then nothing can grow.
        #[test]
        fn scale_outs_within_the_caps_never_exceed_the_quota(quota in 0u32..40, holders in holders()) {
            let split = split(quota, &holders);
            let unshared: u32 = holders.iter().filter(|h| h.shared.is_none()).map(|h| h.instances).sum();
            let caps: u32 = split.caps.values().sum();
            let floors: u32 = holders.iter().filter(|h| h.shared.is_some()).map(|h| floor(h, &split)).sum();
            if unshared + floors <= quota {
                prop_assert!(unshared + caps <= quota);
            } else {
                prop_assert_eq!(caps, floors);
                // Only what is already held can be over the quota: no minimum was granted.
                let held: u32 = holders.iter().filter_map(|h| Some(h.instances.min(h.shared?.max_capacity))).sum();
                prop_assert_eq!(floors, held);
            }
            for h in holders.iter().filter(|h| h.shared.is_some()) {
                let cap = split.caps[&h.resource_id];
                prop_assert!(cap >= floor(h, &split) && cap <= h.shared.unwrap().max_capacity);
            }
        }

        /// Max-min fair: a cap below its maxCapacity is at most one below any cap above its floor.
        #[test]
        fn the_split_is_max_min_fair(quota in 0u32..40, holders in holders()) {
            let split = split(quota, &holders);
            for a in holders.iter().filter(|h| h.shared.is_some()) {
                for b in holders.iter().filter(|h| h.shared.is_some()) {
                    let (cap_a, cap_b) = (split.caps[&a.resource_id], split.caps[&b.resource_id]);
                    if cap_a < a.shared.unwrap().max_capacity && cap_b > floor(b, &split) {
                        prop_assert!(cap_a + 1 >= cap_b, "{} {} {:?}", cap_a, cap_b, split);
                    }
                }
            }
        }

        /// A missing endpoint's resource takes no existing endpoint's minimum, and the caps with
        /// it fit wherever they fit without it.
        #[test]
        fn a_missing_endpoint_takes_no_minimum(quota in 0u32..40, holders in holders(), max in 0u32..6) {
            let without = split(quota, &holders);
            let mut with = holders.clone();
            with.push(Holder {
                resource_id: "endpoint/missing/variant/AllTraffic".into(),
                instances: 0,
                shared: Some(Bounds { min_capacity: 3.min(max), max_capacity: max }),
                has_backlog: true,
                prospective: true,
            });
            let with = split(quota, &with);
            prop_assert_eq!(&with.min_unmet, &without.min_unmet);
            let unshared: u32 = holders.iter().filter(|h| h.shared.is_none()).map(|h| h.instances).sum();
            if unshared + without.caps.values().sum::<u32>() <= quota {
                prop_assert!(unshared + with.caps.values().sum::<u32>() <= quota, "{:?}", with);
            }
        }

        /// An endpoint that scales out within its cap changes no cap: no MaxCapacity writes while
        /// a fleet grows within its shares.
        #[test]
        fn growing_within_a_cap_moves_no_cap(quota in 0u32..40, holders in holders(), pick in any::<prop::sample::Index>()) {
            let before = split(quota, &holders);
            // Growing, not shrinking: an endpoint above its maxCapacity that falls to its cap
            // releases instances, and then caps may move (a minimum waiting for them is granted).
            let growable: Vec<usize> = (0..holders.len())
                .filter(|&i| holders[i].shared.is_some())
                .filter(|&i| before.caps[&holders[i].resource_id] >= holders[i].instances)
                .collect();
            if growable.is_empty() {
                return Ok(());
            }
            let i = growable[pick.index(growable.len())];
            let mut grown = holders.clone();
            grown[i].instances = before.caps[&holders[i].resource_id];
            let after = split(quota, &grown);
            prop_assert_eq!(before.caps, after.caps);
        }
    }
}
