//! What the machine allows: the event rate the CPUs can carry when every event costs the cloud and the tool a known
//! amount of CPU time, and how close a run came to it.

/// CPU cost per event, measured over one window of the events phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventCost {
    /// CPUs the cloud and the tool share.
    pub cpus: f64,
    /// The cloud's CPU time per event, microseconds.
    pub cloud_us: f64,
    /// The tool's CPU time per event (publishers sealing, the subscriber reading), microseconds.
    pub tool_us: f64,
}

impl EventCost {
    /// Events per second the CPUs allow at these costs, if nothing else ran: `cpus / (cloud + tool)`. `None` when
    /// the costs are unknown or zero (a window too short for a clock tick).
    #[must_use]
    pub fn ceiling_per_second(&self) -> Option<f64> {
        let per_event = self.cloud_us + self.tool_us;
        (per_event.is_finite() && per_event > 0.0 && self.cpus > 0.0)
            .then(|| self.cpus * 1e6 / per_event)
    }

    /// `achieved` as a fraction of [`EventCost::ceiling_per_second`].
    #[must_use]
    pub fn fraction_of_ceiling(&self, achieved: f64) -> Option<f64> {
        self.ceiling_per_second().map(|c| achieved / c)
    }

    /// The CPU time per event, cloud and tool together, that would let the CPUs carry `rate` events a second.
    #[must_use]
    pub fn budget_us(cpus: f64, rate: f64) -> f64 {
        cpus * 1e6 / rate
    }
}

/// CPU microseconds per event of `ticks` clock ticks (at `per_second` ticks a second) over `events` events.
#[must_use]
pub fn us_per_event(ticks: u64, per_second: u64, events: u64) -> Option<f64> {
    (events > 0 && per_second > 0).then(|| ticks as f64 * 1e6 / per_second as f64 / events as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_the_cpus_over_the_cost_of_one_event() {
        let cost = EventCost {
            cpus: 2.0,
            cloud_us: 1.5,
            tool_us: 0.5,
        };
        assert_eq!(cost.ceiling_per_second(), Some(1_000_000.0));
        assert_eq!(cost.fraction_of_ceiling(250_000.0), Some(0.25));
        // A million a second on two CPUs leaves two microseconds per event for everything.
        assert_eq!(EventCost::budget_us(2.0, 1_000_000.0), 2.0);
    }

    #[test]
    fn unknown_costs_give_no_ceiling() {
        let none = EventCost {
            cpus: 2.0,
            cloud_us: 0.0,
            tool_us: 0.0,
        };
        assert_eq!(none.ceiling_per_second(), None);
        let nan = EventCost {
            cloud_us: f64::NAN,
            ..none
        };
        assert_eq!(nan.ceiling_per_second(), None);
    }

    #[test]
    fn ticks_become_microseconds_per_event() {
        // 25 ticks of 10 ms over 100,000 events: 2.5 µs each.
        assert_eq!(us_per_event(25, 100, 100_000), Some(2.5));
        assert_eq!(us_per_event(25, 100, 0), None);
    }
}
