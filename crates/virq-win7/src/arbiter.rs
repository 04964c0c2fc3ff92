//! The PnP interrupt arbiter: MSI-X messages or a line, and how many messages.
//!
//! Windows 7 offers messages only when the INF policy says `MSISupported = 1` *and* the
//! function has an MSI-X capability; then the count is the smallest of what was asked, the
//! table size, `MessageNumberLimit` and what the platform can spare, never below one. Fewer
//! messages than asked is a normal outcome the driver must handle (catalogue row 4).

use crate::inf::InfPolicy;
use serde::{Deserialize, Serialize};

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
    Messages { count: u32 },
    /// A shared, level-triggered line interrupt on this IRQ (GSI).
    Line { irq: u32 },
}

impl InterruptGrant {
    /// Message count of the grant, 0 for a line.
    pub fn message_count(&self) -> u32 {
        match *self {
            InterruptGrant::Messages { count } => count,
            InterruptGrant::Line { .. } => 0,
        }
    }

    pub fn is_message(&self) -> bool {
        matches!(self, InterruptGrant::Messages { .. })
    }
}

/// What made the arbiter choose a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineReason {
    /// No `MSISupported = 1` in the hardware key (catalogue row 13).
    InfDisallowsMsi,
    /// The function has no MSI-X capability (or a zero-sized table).
    NoMsixCapability,
}

/// Which bound set the final message count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageLimiter {
    /// Exactly what the request asked for.
    Requested,
    /// The MSI-X table has fewer entries.
    TableSize,
    /// The INF's `MessageNumberLimit`.
    MessageNumberLimit,
    /// The platform could not spare more (vectors, policy).
    PlatformLimit,
}

/// The grant with the reason, so logs and the doctor can say why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantDecision {
    pub grant: InterruptGrant,
    /// Set for a line grant.
    pub line_reason: Option<LineReason>,
    /// Set for a message grant.
    pub limited_by: Option<MessageLimiter>,
}

/// Inputs of one arbitration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
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
    /// Most messages the platform gives one device; values below 1 act as 1.
    pub platform_limit: u32,
}

impl Default for Arbiter {
    /// No platform restriction beyond the MSI-X maximum of 2048 entries.
    fn default() -> Self {
        Self {
            platform_limit: 2048,
        }
    }
}

impl Arbiter {
    pub fn with_platform_limit(platform_limit: u32) -> Self {
        Self { platform_limit }
    }

    /// Decide the grant; pure and deterministic.
    pub fn decide(&self, req: &GrantRequest) -> GrantDecision {
        let line = |reason| GrantDecision {
            grant: InterruptGrant::Line { irq: req.line_irq },
            line_reason: Some(reason),
            limited_by: None,
        };
        if !req.policy.msi_supported {
            return line(LineReason::InfDisallowsMsi);
        }
        let table = match req.msix {
            Some(cap) if cap.table_size > 0 => u32::from(cap.table_size),
            _ => return line(LineReason::NoMsixCapability),
        };
        let requested = if req.requested == 0 {
            table
        } else {
            req.requested
        };
        let mut count = requested;
        let mut limited_by = MessageLimiter::Requested;
        let bounds = [
            (table, MessageLimiter::TableSize),
            (
                req.policy.message_number_limit.unwrap_or(u32::MAX).max(1),
                MessageLimiter::MessageNumberLimit,
            ),
            (self.platform_limit.max(1), MessageLimiter::PlatformLimit),
        ];
        for (bound, limiter) in bounds {
            if bound < count {
                count = bound;
                limited_by = limiter;
            }
        }
        GrantDecision {
            grant: InterruptGrant::Messages { count },
            line_reason: None,
            limited_by: Some(limited_by),
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
        assert_eq!(d.line_reason, Some(LineReason::InfDisallowsMsi));
    }

    #[test]
    fn no_capability_means_line() {
        let a = Arbiter::default();
        let d = a.decide(&req(InfPolicy::msi(None), None, 4));
        assert_eq!(d.grant, InterruptGrant::Line { irq: 11 });
        assert_eq!(d.line_reason, Some(LineReason::NoMsixCapability));
        assert_eq!(
            a.grant(&req(InfPolicy::msi(None), Some(0), 4)),
            InterruptGrant::Line { irq: 11 }
        );
    }

    #[test]
    fn full_request_granted() {
        let d = Arbiter::default().decide(&req(InfPolicy::msi(None), Some(4), 4));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 4 });
        assert_eq!(d.limited_by, Some(MessageLimiter::Requested));
    }

    #[test]
    fn table_smaller_than_requested() {
        let d = Arbiter::default().decide(&req(InfPolicy::msi(None), Some(2), 5));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 2 });
        assert_eq!(d.limited_by, Some(MessageLimiter::TableSize));
    }

    #[test]
    fn message_number_limit_applies() {
        let d = Arbiter::default().decide(&req(InfPolicy::msi(Some(3)), Some(8), 8));
        assert_eq!(d.grant, InterruptGrant::Messages { count: 3 });
        assert_eq!(d.limited_by, Some(MessageLimiter::MessageNumberLimit));
    }

    #[test]
    fn platform_limit_one_and_zero() {
        for limit in [0, 1] {
            let d =
                Arbiter::with_platform_limit(limit).decide(&req(InfPolicy::msi(None), Some(5), 5));
            assert_eq!(d.grant, InterruptGrant::Messages { count: 1 });
            assert_eq!(d.limited_by, Some(MessageLimiter::PlatformLimit));
        }
    }

    #[test]
    fn zero_request_asks_for_whole_table() {
        let g = Arbiter::default().grant(&req(InfPolicy::msi(None), Some(6), 0));
        assert_eq!(g, InterruptGrant::Messages { count: 6 });
        assert_eq!(g.message_count(), 6);
        assert_eq!(InterruptGrant::Line { irq: 3 }.message_count(), 0);
    }
}
