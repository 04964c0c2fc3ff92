//! Which MSI-X message each virtio vector selector gets, as data.
//!
//! Virtio's `msix_config` / `queue_msix_vector` take an MSI-X table entry index, which in
//! Windows terms is the `MessageNumber` (checklist section 2), never the APIC `Vector`.

use virq_events::Selector;

/// A 0-based MSI-X table entry index as the OS granted it (KMDF's `MessageNumber`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageNumber(pub u16);

/// The shape of a plan, named after the rung of the ladder it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanShape {
    /// Config on message 0, queue i on message i + 1.
    PerQueue,
    /// Config on message 0, every queue on message 1 (Linux's shared rung).
    SharedQueues,
    /// Config and every queue on message 0.
    AllOnZero,
    /// No message at all: line interrupt, no selector is written.
    Intx,
}

/// A vector plan: the message (or none) for the config selector and for each queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorPlan {
    /// The rung of the ladder the plan is.
    pub shape: PlanShape,
    /// The message of the config selector (`msix_config`), `None` for no vector.
    pub config: Option<MessageNumber>,
    /// Indexed by queue number.
    pub queues: Vec<Option<MessageNumber>>,
}

impl VectorPlan {
    /// Config on message 0, queue i on message i + 1.
    pub fn per_queue(queues: u16) -> Self {
        Self {
            shape: PlanShape::PerQueue,
            config: Some(MessageNumber(0)),
            queues: (0..queues).map(|q| Some(MessageNumber(q + 1))).collect(),
        }
    }

    /// Config on message 0, every queue on message 1.
    pub fn shared_queues(queues: u16) -> Self {
        Self {
            shape: PlanShape::SharedQueues,
            config: Some(MessageNumber(0)),
            queues: vec![Some(MessageNumber(1)); usize::from(queues)],
        }
    }

    /// Config and every queue on message 0.
    pub fn all_on_zero(queues: u16) -> Self {
        Self {
            shape: PlanShape::AllOnZero,
            config: Some(MessageNumber(0)),
            queues: vec![Some(MessageNumber(0)); usize::from(queues)],
        }
    }

    /// No message: INTx, no selector written.
    pub fn intx(queues: u16) -> Self {
        Self {
            shape: PlanShape::Intx,
            config: None,
            queues: vec![None; usize::from(queues)],
        }
    }

    /// The checklist's rule for a grant of `messages` (0 = INTx): per-queue when there are
    /// enough messages for config plus every queue, otherwise everything on message 0.
    pub fn for_grant(messages: u16, queues: u16) -> Self {
        if messages == 0 {
            Self::intx(queues)
        } else if u32::from(messages) > u32::from(queues) {
            Self::per_queue(queues)
        } else {
            Self::all_on_zero(queues)
        }
    }

    /// The plan uses the line interrupt.
    pub fn is_intx(&self) -> bool {
        self.shape == PlanShape::Intx
    }

    /// Every selector with the message it gets, config first.
    pub fn selectors(&self) -> impl Iterator<Item = (Selector, Option<MessageNumber>)> + '_ {
        std::iter::once((Selector::MsixConfig, self.config)).chain(
            self.queues
                .iter()
                .enumerate()
                .map(|(q, m)| (Selector::Queue(q as u16), *m)),
        )
    }

    /// Queues whose interrupts arrive on `message`.
    pub fn queues_on(&self, message: MessageNumber) -> impl Iterator<Item = u16> + '_ {
        self.queues
            .iter()
            .enumerate()
            .filter(move |(_, m)| **m == Some(message))
            .map(|(q, _)| q as u16)
    }

    /// How many messages the plan needs (highest message number + 1; 0 for INTx).
    pub fn messages_needed(&self) -> u32 {
        self.selectors()
            .filter_map(|(_, m)| m)
            .map(|m| u32::from(m.0) + 1)
            .max()
            .unwrap_or(0)
    }
}

/// How the driver falls back when the device refuses a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VectorPolicy {
    /// Checklist section 3 / catalogue row 4: the plan for the grant, then everything on
    /// message 0, then give up with "device refuses vectors".
    #[default]
    Checklist,
    /// Linux's ladder: per-queue, then shared (config 0, queues 1; or all on 0 with one message),
    /// then INTx (the caller must then turn MSI-X off at the PCI level).
    LinuxLadder,
}

impl VectorPolicy {
    /// The plans to try, in order, for a grant of `messages` (0 = INTx) and `queues` queues.
    pub fn ladder(self, messages: u16, queues: u16) -> Vec<VectorPlan> {
        if messages == 0 {
            return vec![VectorPlan::intx(queues)];
        }
        let enough = u32::from(messages) > u32::from(queues);
        let mut plans = Vec::new();
        match self {
            Self::Checklist => {
                if enough {
                    plans.push(VectorPlan::per_queue(queues));
                }
                plans.push(VectorPlan::all_on_zero(queues));
            }
            Self::LinuxLadder => {
                if enough {
                    plans.push(VectorPlan::per_queue(queues));
                }
                if messages >= 2 {
                    plans.push(VectorPlan::shared_queues(queues));
                } else {
                    plans.push(VectorPlan::all_on_zero(queues));
                }
                plans.push(VectorPlan::intx(queues));
            }
        }
        plans.dedup();
        plans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(plan: &VectorPlan) -> Vec<Option<u16>> {
        plan.selectors().map(|(_, m)| m.map(|m| m.0)).collect()
    }

    #[test]
    fn grant_rule_for_every_message_count_checklist_section_3() {
        let queues = 3u16;
        for messages in 0..=8u16 {
            let plan = VectorPlan::for_grant(messages, queues);
            match messages {
                0 => {
                    assert!(plan.is_intx());
                    assert_eq!(msgs(&plan), vec![None; 4]);
                }
                1..=3 => {
                    assert_eq!(plan.shape, PlanShape::AllOnZero, "messages {messages}");
                    assert_eq!(msgs(&plan), vec![Some(0); 4]);
                }
                _ => {
                    assert_eq!(plan.shape, PlanShape::PerQueue, "messages {messages}");
                    assert_eq!(msgs(&plan), vec![Some(0), Some(1), Some(2), Some(3)]);
                }
            }
            assert!(plan.messages_needed() <= u32::from(messages));
        }
    }

    #[test]
    fn zero_queues_still_routes_config() {
        assert_eq!(VectorPlan::for_grant(1, 0).shape, PlanShape::PerQueue);
        assert_eq!(msgs(&VectorPlan::for_grant(1, 0)), vec![Some(0)]);
    }

    #[test]
    fn queues_on_a_message() {
        let p = VectorPlan::per_queue(2);
        assert_eq!(p.queues_on(MessageNumber(2)).collect::<Vec<_>>(), vec![1]);
        assert_eq!(p.queues_on(MessageNumber(0)).count(), 0);
        let s = VectorPlan::shared_queues(3);
        assert_eq!(
            s.queues_on(MessageNumber(1)).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(s.messages_needed(), 2);
    }

    #[test]
    fn checklist_ladder() {
        let shapes = |m, q| {
            VectorPolicy::Checklist
                .ladder(m, q)
                .iter()
                .map(|p| p.shape)
                .collect::<Vec<_>>()
        };
        assert_eq!(shapes(0, 2), vec![PlanShape::Intx]);
        assert_eq!(shapes(1, 2), vec![PlanShape::AllOnZero]);
        assert_eq!(shapes(2, 2), vec![PlanShape::AllOnZero]);
        assert_eq!(
            shapes(3, 2),
            vec![PlanShape::PerQueue, PlanShape::AllOnZero]
        );
    }

    #[test]
    fn linux_ladder() {
        let shapes = |m, q| {
            VectorPolicy::LinuxLadder
                .ladder(m, q)
                .iter()
                .map(|p| p.shape)
                .collect::<Vec<_>>()
        };
        assert_eq!(shapes(0, 2), vec![PlanShape::Intx]);
        assert_eq!(shapes(1, 2), vec![PlanShape::AllOnZero, PlanShape::Intx]);
        assert_eq!(shapes(2, 2), vec![PlanShape::SharedQueues, PlanShape::Intx]);
        assert_eq!(
            shapes(3, 2),
            vec![
                PlanShape::PerQueue,
                PlanShape::SharedQueues,
                PlanShape::Intx
            ]
        );
    }
}
