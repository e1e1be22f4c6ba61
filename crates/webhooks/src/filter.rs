//! Event types and the filters an endpoint subscribes with.
//!
//! An event type is `<group>.<name>`, both parts made of `a-z` and `_`
//! (`order.settled`, `payout.completed`). A filter is an exact event type,
//! a whole group (`order.*`) or everything (`*`). An endpoint has 1 to
//! [`MAX_FILTERS`] filters and receives an event when any of them matches.
//! Types and filters (de)serialize as their strings, validated on the way
//! in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most filters one endpoint may have.
pub const MAX_FILTERS: usize = 32;
/// Longest event type or filter, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// An event type or filter that does not parse, or a filter list that is
/// not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Longer than [`MAX_EVENT_TYPE_LEN`].
    #[error("an event type or filter is {len} bytes long; the limit is {MAX_EVENT_TYPE_LEN}")]
    TooLong {
        /// Length of the refused text.
        len: usize,
    },
    /// Not `<group>.<name>` of `a-z` and `_`.
    #[error("{input:?} is not an event type: write `<group>.<name>` with lowercase letters and `_` only, e.g. `order.settled`")]
    EventType {
        /// The refused text (at most [`MAX_EVENT_TYPE_LEN`] bytes).
        input: String,
    },
    /// Not an event type, `<group>.*` or `*`.
    #[error("{input:?} is not an event filter: write an event type (`order.settled`), a whole group (`order.*`) or `*` for every event")]
    Filter {
        /// The refused text (at most [`MAX_EVENT_TYPE_LEN`] bytes).
        input: String,
    },
    /// An endpoint without any filter.
    #[error("an endpoint needs at least one event filter; use `*` to receive every event")]
    NoFilters,
    /// More than [`MAX_FILTERS`] filters.
    #[error("{count} event filters given; an endpoint takes at most {MAX_FILTERS} (a group filter such as `order.*` covers a whole group)")]
    TooManyFilters {
        /// Number of filters given.
        count: usize,
    },
}

/// A validated event type, `<group>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventType(String);

impl EventType {
    /// Parses `<group>.<name>`, each part one or more of `a-z` and `_`.
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        check_len(s)?;
        match s.split_once('.') {
            Some((group, name)) if is_part(group) && is_part(name) => Ok(Self(s.to_owned())),
            _ => Err(FilterError::EventType {
                input: s.to_owned(),
            }),
        }
    }

    /// The whole type, e.g. `order.settled`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the dot, e.g. `order`.
    pub fn group(&self) -> &str {
        self.0.split_once('.').map_or("", |(group, _)| group)
    }

    /// The part after the dot, e.g. `settled`.
    pub fn name(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, name)| name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EventType {
    type Error = FilterError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> Self {
        t.0
    }
}

/// Which events an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EventFilter {
    /// `*`: every event.
    All,
    /// `<group>.*`: every event of the group (holds the group, e.g. `order`).
    Group(String),
    /// One event type.
    Exact(EventType),
}

impl EventFilter {
    /// Whether an event of type `event_type` passes this filter.
    pub fn matches(&self, event_type: &EventType) -> bool {
        match self {
            Self::All => true,
            Self::Group(group) => event_type.group() == group,
            Self::Exact(exact) => exact == event_type,
        }
    }
}

impl fmt::Display for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Group(group) => write!(f, "{group}.*"),
            Self::Exact(exact) => f.write_str(exact.as_str()),
        }
    }
}

impl TryFrom<String> for EventFilter {
    type Error = FilterError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        parse_filter(&s)
    }
}

impl From<EventFilter> for String {
    fn from(f: EventFilter) -> Self {
        f.to_string()
    }
}

/// Parses one filter: `*`, `<group>.*` or an exact event type.
pub fn parse_filter(s: &str) -> Result<EventFilter, FilterError> {
    check_len(s)?;
    let refused = || FilterError::Filter {
        input: s.to_owned(),
    };
    if s == "*" {
        return Ok(EventFilter::All);
    }
    match s.split_once('.') {
        Some((group, "*")) if is_part(group) => Ok(EventFilter::Group(group.to_owned())),
        Some((group, name)) if is_part(group) && is_part(name) => {
            Ok(EventFilter::Exact(EventType(s.to_owned())))
        }
        _ => Err(refused()),
    }
}

/// Parses an endpoint's filter list: 1 to [`MAX_FILTERS`] filters. Checks
/// the count before parsing, so an oversized list costs nothing.
pub fn parse_filters<S: AsRef<str>>(filters: &[S]) -> Result<Vec<EventFilter>, FilterError> {
    if filters.is_empty() {
        return Err(FilterError::NoFilters);
    }
    if filters.len() > MAX_FILTERS {
        return Err(FilterError::TooManyFilters {
            count: filters.len(),
        });
    }
    filters.iter().map(|f| parse_filter(f.as_ref())).collect()
}

/// Whether an event of type `event_type` passes `filter`.
pub fn matches(filter: &EventFilter, event_type: &EventType) -> bool {
    filter.matches(event_type)
}

/// Whether an event of type `event_type` passes any of an endpoint's
/// filters.
pub fn matches_any(filters: &[EventFilter], event_type: &EventType) -> bool {
    filters.iter().any(|f| f.matches(event_type))
}

fn check_len(s: &str) -> Result<(), FilterError> {
    if s.len() > MAX_EVENT_TYPE_LEN {
        return Err(FilterError::TooLong { len: s.len() });
    }
    Ok(())
}

/// One part of a type: one or more of `a-z` and `_`.
fn is_part(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> EventType {
        EventType::parse(s).unwrap()
    }

    #[test]
    fn event_types() {
        let e = t("order.settled");
        assert_eq!(
            (e.group(), e.name(), e.as_str()),
            ("order", "settled", "order.settled")
        );
        assert_eq!(t("payout.completed").to_string(), "payout.completed");
        assert!(EventType::parse("order.paid_late").is_ok());
        assert!(EventType::parse("_._").is_ok());
        for bad in [
            "",
            "order",
            "order.",
            ".settled",
            "order.settled.again",
            "Order.settled",
            "order.settled2",
            "order-x.settled",
            "order.*",
            "*",
            " order.settled",
            "order.settled ",
            "ordér.settled",
        ] {
            assert!(
                matches!(EventType::parse(bad), Err(FilterError::EventType { .. })),
                "{bad:?}"
            );
        }
        let long = format!("order.{}", "a".repeat(MAX_EVENT_TYPE_LEN));
        assert!(matches!(
            EventType::parse(&long),
            Err(FilterError::TooLong { .. })
        ));
        let max = format!("order.{}", "a".repeat(MAX_EVENT_TYPE_LEN - 6));
        assert!(EventType::parse(&max).is_ok());
    }

    #[test]
    fn filters_parse_and_print() {
        assert_eq!(parse_filter("*"), Ok(EventFilter::All));
        assert_eq!(
            parse_filter("order.*"),
            Ok(EventFilter::Group("order".into()))
        );
        assert_eq!(
            parse_filter("order.settled"),
            Ok(EventFilter::Exact(t("order.settled")))
        );
        for s in ["*", "order.*", "order.settled"] {
            assert_eq!(parse_filter(s).unwrap().to_string(), s);
        }
        for bad in [
            "",
            "**",
            "*.*",
            "*.settled",
            "order",
            "order.**",
            "order.s*",
            ".*",
            "Order.*",
        ] {
            assert!(
                matches!(parse_filter(bad), Err(FilterError::Filter { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_filter(&"a".repeat(200)),
            Err(FilterError::TooLong { len: 200 })
        ));
    }

    #[test]
    fn matching() {
        let settled = t("order.settled");
        let payout = t("payout.completed");
        let all = parse_filter("*").unwrap();
        let orders = parse_filter("order.*").unwrap();
        let exact = parse_filter("order.settled").unwrap();
        assert!(matches(&all, &settled) && matches(&all, &payout));
        assert!(matches(&orders, &settled) && !matches(&orders, &payout));
        assert!(matches(&exact, &settled) && !matches(&exact, &t("order.expired")));
        // A group is matched whole, not as a prefix.
        assert!(!matches(&orders, &t("orders.settled")));
        assert!(!matches(&parse_filter("order_x.*").unwrap(), &settled));
        let list = parse_filters(&["payout.*", "order.settled"]).unwrap();
        assert!(matches_any(&list, &settled));
        assert!(matches_any(&list, &payout));
        assert!(!matches_any(&list, &t("order.expired")));
        assert!(!matches_any(&[], &settled));
    }

    #[test]
    fn filter_lists() {
        let none: [&str; 0] = [];
        assert_eq!(parse_filters(&none), Err(FilterError::NoFilters));
        let max: Vec<String> = (0..MAX_FILTERS)
            .map(|i| format!("g.{}", "a".repeat(i + 1)))
            .collect();
        assert_eq!(parse_filters(&max).unwrap().len(), MAX_FILTERS);
        let over: Vec<&str> = vec!["*"; MAX_FILTERS + 1];
        assert_eq!(
            parse_filters(&over),
            Err(FilterError::TooManyFilters { count: 33 })
        );
        assert!(matches!(
            parse_filters(&["order.*", "bad"]),
            Err(FilterError::Filter { .. })
        ));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let filters = parse_filters(&["*", "order.*", "payout.completed"]).unwrap();
        let json = serde_json::to_string(&filters).unwrap();
        assert_eq!(json, r#"["*","order.*","payout.completed"]"#);
        let back: Vec<EventFilter> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, filters);
        assert!(serde_json::from_str::<EventFilter>(r#""Order.*""#).is_err());
        let e: EventType = serde_json::from_str(r#""order.settled""#).unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), r#""order.settled""#);
        assert!(serde_json::from_str::<EventType>(r#""order.*""#).is_err());
    }

    #[test]
    fn error_messages_say_what_to_write() {
        let msg = parse_filter("Order.x").unwrap_err().to_string();
        assert!(msg.contains("order.*") && msg.contains("Order.x"), "{msg}");
        let msg = parse_filters::<&str>(&[]).unwrap_err().to_string();
        assert!(msg.contains('*'), "{msg}");
    }
}
