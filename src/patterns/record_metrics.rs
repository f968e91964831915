//! Level 3, client streaming: `RecordMetrics` counts and averages a stream of readings.

use grpcio::{RpcStatus, RpcStatusCode};

use crate::call::Requests;
use crate::proto::{Metric, MetricSummary};

/// Why a stream of metrics cannot be summarised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("metric #{index} has value {value}; every value must be a finite number")]
    NotFinite { index: u64, value: f64 },
    #[error("more than {} metrics in one stream; MetricSummary.count is an int32", i32::MAX)]
    TooMany,
    #[error("the values sum beyond the range of a double; send smaller values")]
    SumOverflow,
}

impl From<MetricsError> for RpcStatus {
    fn from(e: MetricsError) -> Self {
        let code = match e {
            MetricsError::NotFinite { .. } => RpcStatusCode::INVALID_ARGUMENT,
            MetricsError::TooMany | MetricsError::SumOverflow => RpcStatusCode::OUT_OF_RANGE,
        };
        RpcStatus::with_message(code, e.to_string())
    }
}

/// Count and mean of a stream of readings, fed one value at a time.
///
/// The sum is compensated (Neumaier's variant of Kahan summation), so the mean of a long
/// stream is as precise as that of a short one, instead of drifting by one rounding per value.
#[derive(Debug, Default, Clone)]
pub struct MetricsAccumulator {
    count: u64,
    sum: f64,
    compensation: f64,
}

impl MetricsAccumulator {
    /// Adds one reading. Rejects non-finite values and counts that `int32` cannot hold.
    pub fn push(&mut self, value: f64) -> Result<(), MetricsError> {
        if !value.is_finite() {
            return Err(MetricsError::NotFinite { index: self.count, value });
        }
        if self.count >= i32::MAX as u64 {
            return Err(MetricsError::TooMany);
        }
        let sum = self.sum + value;
        self.compensation +=
            if self.sum.abs() >= value.abs() { (self.sum - sum) + value } else { (value - sum) + self.sum };
        self.sum = sum;
        self.count += 1;
        Ok(())
    }

    /// The summary the tutorial returns: count 0 and average 0 for an empty stream.
    pub fn summary(&self) -> Result<MetricSummary, MetricsError> {
        let total = self.sum + self.compensation;
        if !total.is_finite() {
            return Err(MetricsError::SumOverflow);
        }
        let average = if self.count == 0 { 0.0 } else { total / self.count as f64 };
        Ok(MetricSummary { count: self.count as i32, average, ..Default::default() })
    }

    #[cfg(test)]
    fn with_count(count: u64) -> Self {
        MetricsAccumulator { count, ..Default::default() }
    }
}

/// Reads the whole stream, then replies with its count and mean; fails at the first bad value
/// without waiting for the rest.
pub async fn record_metrics(mut requests: Requests<Metric>) -> Result<MetricSummary, RpcStatus> {
    let mut readings = MetricsAccumulator::default();
    while let Some(metric) = requests.message().await? {
        log::debug!("Received data: {:.2}", metric.value);
        readings.push(metric.value)?;
    }
    Ok(readings.summary()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stream_is_zero_count_zero_average() {
        let s = MetricsAccumulator::default().summary().unwrap();
        assert_eq!((s.count, s.average), (0, 0.0));
    }

    #[test]
    fn compensated_sum_keeps_small_values_next_to_large_ones() {
        // A naive f64 sum loses every 1.0 added to 1e16 (the spacing there is 2).
        let mut acc = MetricsAccumulator::default();
        acc.push(1e16).unwrap();
        for _ in 0..1000 {
            acc.push(1.0).unwrap();
        }
        acc.push(-1e16).unwrap();
        let s = acc.summary().unwrap();
        assert_eq!(s.count, 1002);
        assert_eq!(s.average, 1000.0 / 1002.0);
    }

    #[test]
    fn non_finite_values_are_rejected_with_their_index() {
        let mut acc = MetricsAccumulator::default();
        acc.push(1.0).unwrap();
        assert!(matches!(acc.push(f64::NAN), Err(MetricsError::NotFinite { index: 1, .. })));
        assert_eq!(acc.push(f64::NEG_INFINITY), Err(MetricsError::NotFinite { index: 1, value: f64::NEG_INFINITY }));
    }

    #[test]
    fn count_beyond_int32_is_out_of_range_not_wrapped() {
        let mut acc = MetricsAccumulator::with_count(i32::MAX as u64 - 1);
        acc.push(1.0).unwrap();
        assert_eq!(acc.summary().unwrap().count, i32::MAX);
        let err = acc.push(1.0).unwrap_err();
        assert_eq!(err, MetricsError::TooMany);
        assert_eq!(RpcStatus::from(err).code(), RpcStatusCode::OUT_OF_RANGE);
    }

    #[test]
    fn overflowing_sum_is_out_of_range() {
        let mut acc = MetricsAccumulator::default();
        acc.push(f64::MAX).unwrap();
        acc.push(f64::MAX).unwrap();
        assert_eq!(acc.summary().unwrap_err(), MetricsError::SumOverflow);
    }
}
