//! The PnP interrupt arbiter: MSI-X messages or a line, and how many messages.
//!
//! Windows 7 offers messages only when the INF says `MSISupported = 1` in the hardware key,
//! the function has an MSI-X capability and message interrupts are not off for the whole
//! platform (ACPI FADT "MSI not supported", chipset errata known to pci.sys). The request is
//! the table size, capped by `MessageNumberLimit`. The PnP manager then grants **all** the
//! messages requested or, when it cannot, **exactly one**; when message allocation fails
//! altogether the function gets its **line**. There is no "3 of 5": a driver must work with N,
//! 1 or a line (catalogue rows 4, 26, 28). Every decision records its reason.
//!
//! [`Arbiter::decide`] is the policy half; vector shortage, the other reason for one message or
//! a line, is found when the vectors are allocated ([`crate::pnp::start_device`]).

use crate::inf::InfPolicy;
use serde::{Deserialize, Serialize};

/// Most messages Windows 7 gives one PCI function.
pub const MAX_MESSAGES_PER_FUNCTION: u32 = 910;

/// The MSI-X capability as the PCI bus driver reads it from config space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixCapabilityInfo {
    /// Number of table entries (Message Control `TableSize` field + 1).
    pub table_size: u16,
}

/// What the arbiter decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InterruptGrant {
    /// `count` MSI-X messages, `MessageNumber` `0..count`, table entries `0..count`.
    Messages {
        /// Messages granted.
        count: u32,
    },
    /// A shared, level-triggered line interrupt on this IRQ (GSI).
    Line {
        /// The IRQ (GSI) of the line.
        irq: u32,
    },
}

impl InterruptGrant {
    /// Message count of the grant, 0 for a line.
    pub fn message_count(&self) -> u32 {
        match *self {
            InterruptGrant::Messages { count } => count,
            InterruptGrant::Line { .. } => 0,
        }
    }

    /// The grant is message-signaled (`CM_RESOURCE_INTERRUPT_MESSAGE` descriptors).
    pub fn is_message(&self) -> bool {
        matches!(self, InterruptGrant::Messages { .. })
    }
}

/// What made the function run on its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineReason {
    /// No `MSISupported = 1` in the hardware key (catalogue row 13).
    InfDisallowsMsi,
    /// The function has no MSI-X capability (or a zero-sized table).
    NoMsixCapability,
    /// Message interrupts are off platform-wide although the INF is right (catalogue row 28).
    PlatformMsiDisabled,
    /// Not even one message could be allocated (no free vector).
    AllocationFailed,
}

/// Why one message instead of all requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneMessageReason {
    /// The platform could not give the whole request (`virq check --granted N`, N below it).
    PlatformLimit,
    /// The request is above the 910 messages Windows 7 gives one function.
    PerFunctionLimit,
    /// Not enough free vectors for the request; one was found.
    VectorsShort,
}

/// Why the grant is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "grant", content = "why")]
pub enum GrantReason {
    /// Every message requested.
    AllRequested,
    /// Exactly one message.
    OneMessage(OneMessageReason),
    /// The line interrupt.
    Line(LineReason),
}

/// The grant with the request and the reason, so logs and the doctor can say why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantDecision {
    /// What Windows granted.
    pub grant: InterruptGrant,
    /// Messages requested (table size capped by `MessageNumberLimit`); 0 when none were.
    pub requested: u32,
    /// Why the grant is what it is (all requested, exactly one, or the line).
    pub reason: GrantReason,
}

impl GrantDecision {
    /// The line reason, for a line grant.
    pub fn line_reason(&self) -> Option<LineReason> {
        match self.reason {
            GrantReason::Line(r) => Some(r),
            _ => None,
        }
    }

    /// One message where more were asked for: the reason.
    pub fn one_message_reason(&self) -> Option<OneMessageReason> {
        match self.reason {
            GrantReason::OneMessage(r) => Some(r),
            _ => None,
        }
    }

    /// The same request, on the line after all (no vector for even one message).
    pub fn fall_back_to_line(self, irq: u32, reason: LineReason) -> Self {
        Self {
            grant: InterruptGrant::Line { irq },
            reason: GrantReason::Line(reason),
            ..self
        }
    }

    /// The same request, with one message after all.
    pub fn fall_back_to_one(self, reason: OneMessageReason) -> Self {
        Self {
            grant: InterruptGrant::Messages { count: 1 },
            reason: GrantReason::OneMessage(reason),
            ..self
        }
    }

    /// How the check report says it: `3 of 3 messages requested`, `1 message (platform
    /// limit; 3 requested)`, `line IRQ 11 (INF: no MSISupported in the .HW section)`.
    pub fn describe(&self) -> String {
        match (self.grant, self.reason) {
            (InterruptGrant::Messages { count }, GrantReason::AllRequested) => {
                format!("all {count} message(s) requested")
            }
            (InterruptGrant::Messages { .. }, GrantReason::OneMessage(r)) => format!(
                "exactly one message of {} requested ({})",
                self.requested,
                match r {
                    OneMessageReason::PlatformLimit => "the platform could not give them all",
                    OneMessageReason::PerFunctionLimit => "above 910 messages per function",
                    OneMessageReason::VectorsShort => "not enough free vectors",
                }
            ),
            (InterruptGrant::Line { irq }, reason) => format!(
                "line IRQ {irq} ({})",
                match reason {
                    GrantReason::Line(LineReason::InfDisallowsMsi) =>
                        "the INF has no MSISupported=1 in the .HW section",
                    GrantReason::Line(LineReason::NoMsixCapability) =>
                        "the function has no MSI-X capability",
                    GrantReason::Line(LineReason::PlatformMsiDisabled) =>
                        "message interrupts are off platform-wide",
                    GrantReason::Line(LineReason::AllocationFailed) => "message allocation failed",
                    _ => "line",
                }
            ),
            (InterruptGrant::Messages { count }, _) => format!("{count} message(s)"),
        }
    }
}

/// Inputs of one arbitration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    /// The INF's interrupt-management keys for the device.
    pub policy: InfPolicy,
    /// `None` when the function has no MSI-X capability.
    pub msix: Option<MsixCapabilityInfo>,
    /// Messages the driver asks for; 0 asks for the whole table (the Windows default).
    pub requested: u32,
    /// The function's line interrupt (used when no messages are granted).
    pub line_irq: u32,
}

/// The platform side of the arbiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arbiter {
    /// Most messages the platform can give this function at once; a request above it gets
    /// exactly one. Values below 1 act as 1.
    pub platform_limit: u32,
    /// Message interrupts allowed on this platform at all.
    pub msi_enabled: bool,
}

impl Default for Arbiter {
    /// Message interrupts allowed, no limit beyond Windows 7's own.
    fn default() -> Self {
        Self {
            platform_limit: u32::MAX,
            msi_enabled: true,
        }
    }
}

impl Arbiter {
    /// An arbiter that allows messages but gives at most `platform_limit` at once.
    pub fn with_platform_limit(platform_limit: u32) -> Self {
        Self {
            platform_limit,
            ..Self::default()
        }
    }

    /// A platform with message interrupts off (ACPI FADT, chipset errata).
    pub fn msi_disabled() -> Self {
        Self {
            msi_enabled: false,
            ..Self::default()
        }
    }

    /// Decide the grant; pure and deterministic.
    pub fn decide(&self, req: &GrantRequest) -> GrantDecision {
        let line = |reason, requested| GrantDecision {
            grant: InterruptGrant::Line { irq: req.line_irq },
            requested,
            reason: GrantReason::Line(reason),
        };
        if !req.policy.msi_supported {
            return line(LineReason::InfDisallowsMsi, 0);
        }
        let table = match req.msix {
            Some(cap) if cap.table_size > 0 => u32::from(cap.table_size),
            _ => return line(LineReason::NoMsixCapability, 0),
        };
        let asked = if req.requested == 0 {
            table
        } else {
            req.requested
        };
        let requested = asked
            .min(table)
            .min(req.policy.message_number_limit.unwrap_or(u32::MAX).max(1));
        if !self.msi_enabled {
            return line(LineReason::PlatformMsiDisabled, requested);
        }
        let one = |reason| GrantDecision {
            grant: InterruptGrant::Messages { count: 1 },
            requested,
            reason: GrantReason::OneMessage(reason),
        };
        if requested > MAX_MESSAGES_PER_FUNCTION {
            return one(OneMessageReason::PerFunctionLimit);
        }
        if requested > self.platform_limit.max(1) {
            return one(OneMessageReason::PlatformLimit);
        }
        GrantDecision {
            grant: InterruptGrant::Messages { count: requested },
            requested,
            reason: GrantReason::AllRequested,
        }
    }

    /// Just the grant.
    pub fn grant(&self, req: &GrantRequest) -> InterruptGrant {
        self.decide(req).grant
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(policy: InfPolicy, table: Option<u16>, requested: u32) -> GrantRequest {
        GrantRequest {
            policy,
            msix: table.map(|table_size| MsixCapabilityInfo { table_size }),
            requested,
            line_irq: 11,
        }
    }

    #[test]
    fn no_inf_msi_means_line_even_with_msix() {
        let d = Arbiter::default().decide(&req(InfPolicy::line_only(), Some(4), 4));
        assert_eq!(d.grant, InterruptGrant::Line { irq: 11 });
        assert_eq!(d.line_reason(), Some(LineReason::InfDisallowsMsi));
    }

    #[test]
    fn no_capability_means_line() {
        let a = Arbiter::default();
        let d = a.decide(&req(InfPolicy::msi(None), None, 4));
        assert_eq!(d.grant, InterruptGrant::Line { irq: 11 });
        assert_eq!(d.line_reason(), Some(LineReason::NoMsixCapability));
        assert_eq!(
            a.grant(&req(InfPolicy::msi(None), Some(0), 4)),
            InterruptGrant::Line { irq: 11 }
        );
    }

    /// Catalogue row 28: a right INF and an MSI-X capability still get the line.
    #[test]
    fn platform_with_msi_off_gives_the_line_to_a_right_inf() {
        let d = Arbiter::msi_disabled().decide(&req(InfPolicy::msi(None), Some(3), 0));
        assert_eq!(d.grant, InterruptGrant::Line { irq: 11 });
        assert_eq!(d.line_reason(), Some(LineReason::PlatformMsiDisabled));
        assert_eq!(d.requested, 3);
        assert!(
            d.describe().contains("off platform-wide"),
            "{}",
            d.describe()
        );
    }

    #[test]
    fn full_request_granted() {
        let d = Arbiter::default().decide(&req(InfPolicy::msi(None), Some(4), 4));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 4 });
        assert_eq!(d.reason, GrantReason::AllRequested);
    }

    #[test]
    fn the_request_is_the_table_capped_by_message_number_limit() {
        let d = Arbiter::default().decide(&req(InfPolicy::msi(None), Some(2), 5));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 2 });
        let d = Arbiter::default().decide(&req(InfPolicy::msi(Some(3)), Some(8), 8));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 3 });
        assert_eq!((d.requested, d.reason), (3, GrantReason::AllRequested));
    }

    /// `--granted N` below the request: exactly one message, never N.
    #[test]
    fn a_platform_that_cannot_give_all_gives_exactly_one() {
        for limit in [0, 1, 2, 4] {
            let d =
                Arbiter::with_platform_limit(limit).decide(&req(InfPolicy::msi(None), Some(5), 5));
            assert_eq!(d.grant, InterruptGrant::Messages { count: 1 }, "{limit}");
            assert_eq!(
                d.one_message_reason(),
                Some(OneMessageReason::PlatformLimit)
            );
            assert_eq!(d.requested, 5);
        }
    }

    #[test]
    fn above_910_messages_per_function_gives_one() {
        let d = Arbiter::default().decide(&req(InfPolicy::msi(None), Some(2048), 0));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 1 });
        assert_eq!(
            d.one_message_reason(),
            Some(OneMessageReason::PerFunctionLimit)
        );
        let d = Arbiter::default().decide(&req(InfPolicy::msi(Some(910)), Some(2048), 0));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 910 });
    }

    #[test]
    fn zero_request_asks_for_whole_table() {
        let g = Arbiter::default().grant(&req(InfPolicy::msi(None), Some(6), 0));
        assert_eq!(g, InterruptGrant::Messages { count: 6 });
        assert_eq!(g.message_count(), 6);
        assert_eq!(InterruptGrant::Line { irq: 3 }.message_count(), 0);
    }

    proptest! {
        /// Whatever the INF, the table, the request and the platform: all requested, exactly
        /// one, or the line, and the reason says which.
        #[test]
        fn grants_are_all_one_or_a_line(
            msi in any::<bool>(),
            limit in proptest::option::of(1u32..40),
            table in proptest::option::of(0u16..2049),
            requested in 0u32..3000,
            platform in 0u32..3000,
            platform_msi in any::<bool>(),
        ) {
            let policy = if msi { InfPolicy::msi(limit) } else { InfPolicy::line_only() };
            let a = Arbiter { platform_limit: platform, msi_enabled: platform_msi };
            let d = a.decide(&req(policy, table, requested));
            match (d.grant, d.reason) {
                (InterruptGrant::Messages { count }, GrantReason::AllRequested) => {
                    prop_assert_eq!(count, d.requested);
                    prop_assert!((1..=MAX_MESSAGES_PER_FUNCTION).contains(&count));
                }
                (InterruptGrant::Messages { count }, GrantReason::OneMessage(_)) => {
                    prop_assert_eq!(count, 1);
                    prop_assert!(d.requested > 1);
                }
                (InterruptGrant::Line { irq }, GrantReason::Line(_)) => prop_assert_eq!(irq, 11),
                other => prop_assert!(false, "inconsistent decision {:?}", other),
            }
        }
    }
}
