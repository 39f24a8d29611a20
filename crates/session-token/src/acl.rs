//! Access decisions for one token: may this client publish to a topic, subscribe to a
//! filter, or receive a message on a topic?
//!
//! Built once per connection from the verified claims (the grants are parsed here, not per
//! message), then consulted on every PUBLISH / SUBSCRIBE / delivery.

use crate::claims::Claims;
use crate::conductor::{is_conductor_topic, may_write_conductor_topics};
use crate::presence::is_reserved_for_system;
use crate::topic::{TopicError, TopicFilter, TopicName};

/// How an MQTT 5 shared subscription starts: `$share/<group>/<filter>`.
pub const SHARED_SUBSCRIPTION_PREFIX: &str = "$share/";

/// The `<filter>` of a shared subscription, given what follows `$share/`; `None` when the
/// group is empty or holds a wildcard, or no filter follows it.
fn shared_filter(shared: &str) -> Option<&str> {
    let (group, filter) = shared.split_once('/')?;
    let valid_group = !group.is_empty() && !group.contains(['+', '#']);
    (valid_group && !filter.is_empty()).then_some(filter)
}

/// The parsed grants of one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    subscribe: Vec<TopicFilter>,
    publish: Vec<TopicFilter>,
    /// The holder is the service's broker link, whose grants may reach the conductor
    /// topics reserved for the system ([`may_write_conductor_topics`]); decided once here.
    writes_conductors: bool,
}

impl Acl {
    /// Parses the `subs` and `publ` grants; a malformed grant makes the whole token unusable.
    pub fn from_claims(claims: &Claims) -> Result<Self, TopicError> {
        let mut acl = Self::from_grants(&claims.subs, &claims.publ)?;
        acl.writes_conductors = may_write_conductor_topics(&claims.sid, &claims.sub);
        Ok(acl)
    }

    pub fn from_grants(subscribe: &[String], publish: &[String]) -> Result<Self, TopicError> {
        let parse = |grants: &[String]| {
            grants
                .iter()
                .map(|g| TopicFilter::parse(g))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Acl {
            subscribe: parse(subscribe)?,
            publish: parse(publish)?,
            writes_conductors: false,
        })
    }

    /// The subscribe grants, as written in the token.
    pub fn subscribe_grants(&self) -> impl Iterator<Item = &str> {
        self.subscribe.iter().map(TopicFilter::as_str)
    }

    /// The publish grants, as written in the token.
    pub fn publish_grants(&self) -> impl Iterator<Item = &str> {
        self.publish.iter().map(TopicFilter::as_str)
    }

    /// May the holder publish to `topic`? Malformed topics are refused, and so are the
    /// sub-trees of a session only the system writes ([`is_reserved_for_system`]), whatever
    /// the grants say; only the service's broker link may write the conductor topics
    /// among them (as far as its grants reach).
    pub fn may_publish(&self, topic: &str) -> bool {
        reaches(&self.publish, topic)
            && (!is_reserved_for_system(topic)
                || (self.writes_conductors && is_conductor_topic(topic)))
    }

    /// May the holder subscribe to `filter`? Only when every topic the filter can match is
    /// covered by one subscribe grant (subset, not mere overlap). A shared subscription
    /// `$share/<group>/<filter>` is judged by its `<filter>`; the group must be one
    /// non-empty level without wildcards.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let filter = match filter.strip_prefix(SHARED_SUBSCRIPTION_PREFIX) {
            Some(shared) => match shared_filter(shared) {
                Some(filter) => filter,
                None => return false,
            },
            None => filter,
        };
        TopicFilter::parse(filter).is_ok_and(|f| self.subscribe.iter().any(|g| g.covers_filter(&f)))
    }

    /// May a message on `topic` be delivered to the holder?
    pub fn may_receive(&self, topic: &str) -> bool {
        reaches(&self.subscribe, topic)
    }
}

/// Is `topic` a valid topic name that one of `grants` covers? The broker asks this for
/// every message (the publisher's write and each subscriber's read), so the common case,
/// a topic inside a grant of literal levels ending in `#` (a session's `/S/#`), is decided
/// by the topic's prefix and a check of the rest alone; every other case takes the full
/// rules.
fn reaches(grants: &[TopicFilter], topic: &str) -> bool {
    if let Some(valid) = grants
        .iter()
        .find_map(|grant| grant.covers_by_prefix(topic))
    {
        return valid;
    }
    TopicName::validate(topic).is_ok() && grants.iter().any(|g| g.covers_valid_topic(topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Claims, DeviceGrant};
    use proptest::prelude::*;

    fn session_acl(sid: &str) -> Acl {
        Acl::from_claims(&Claims::for_device(&DeviceGrant {
            issuer: "ism",
            client: "dev",
            session_id: sid,
            issued_at: 0,
            lifetime_secs: 60,
            token_id: "j",
            generation: 0,
        }))
        .expect("device grants parse")
    }

    #[test]
    fn escape_attempts_are_denied() {
        let acl = session_acl("111111");
        for f in [
            "#",
            "+/#",
            "/+/#",
            "/222222/#",
            "$SYS/#",
            "/111111",
            "+/111111/#",
            "/+/x",
        ] {
            assert!(!acl.may_subscribe(f), "subscribe {f} must be denied");
        }
        for t in ["/222222/x", "$SYS/x", "/111111", "/111111/+", ""] {
            assert!(!acl.may_publish(t), "publish {t} must be denied");
        }
        for t in [
            "/111111/$presence/dev",
            "/111111/$presence/other",
            "/111111/$conductor/state",
        ] {
            assert!(!acl.may_publish(t), "publish {t} is the system's");
            assert!(acl.may_receive(t), "{t} can be read");
        }
        assert!(acl.may_subscribe("/111111/$presence/#"));
        assert!(acl.may_publish("/111111/$conductor/in/hello"));
        assert!(acl.may_subscribe("/111111/#"));
        assert!(acl.may_subscribe("/111111/+/x"));
        assert!(acl.may_publish("/111111/lamp/state"));
        assert!(acl.may_receive("/111111/lamp/state"));
        assert!(!acl.may_receive("/222222/lamp/state"));
    }

    #[test]
    fn only_the_broker_link_writes_the_conductor_topics() {
        let grants = |sid: &str, sub: &str| Claims {
            sid: sid.to_owned(),
            sub: sub.to_owned(),
            subs: vec![],
            publ: vec!["/+/$conductor/#".to_owned(), "/111111/#".to_owned()],
            ..Claims::for_revocation_service("ism", sub, 0, 60, "j")
        };
        let link = Acl::from_claims(&grants("", "$ism-link-0123456789abcdef")).expect("parses");
        assert!(link.may_publish("/111111/$conductor/state"));
        assert!(link.may_publish("/222222/$conductor/state"));
        assert!(link.may_publish("/111111/$conductor/in/x"));
        assert!(
            !link.may_publish("/111111/$presence/dev"),
            "presence is the broker's"
        );
        assert!(!link.may_publish("/222222/$presence/dev"));
        // Another principal without a session (a service token), or a device, with the
        // very same grants: the reserved conductor topics stay out of reach.
        for (sid, sub) in [
            ("", "$ism-service-x"),
            ("", "ism-link-x"),
            ("111111", "dev"),
        ] {
            let other = Acl::from_claims(&grants(sid, sub)).expect("parses");
            assert!(
                !other.may_publish("/111111/$conductor/state"),
                "{sid} {sub}"
            );
            assert!(
                !other.may_publish("/222222/$conductor/state"),
                "{sid} {sub}"
            );
            assert!(other.may_publish("/111111/$conductor/in/x"), "{sid} {sub}");
        }
    }

    #[test]
    fn shared_subscriptions_are_judged_by_their_filter() {
        let acl = session_acl("111111");
        // The grant is `/111111/#`; the filter after the group keeps its leading slash.
        for inside in [
            "$share/g//111111/#",
            "$share/workers//111111/+/x",
            "$share/g//111111/a",
        ] {
            assert!(acl.may_subscribe(inside), "{inside} is inside");
        }
        for outside in [
            "$share/g/#",
            "$share/g//222222/#",
            "$share/g/+/#",
            "$share/g//+/x",
            "$share/g/$SYS/#",
            "$share//111111/#",
            "$share/+//111111/#",
            "$share/#//111111/#",
            "$share/g+//111111/#",
            "$share/g",
            "$share/g/",
            "$share/",
            "$share",
            "$SHARE/g//111111/#",
            "$share/g//111111",
        ] {
            assert!(!acl.may_subscribe(outside), "{outside} must be denied");
        }
    }

    #[test]
    fn malformed_grants_are_rejected() {
        assert!(Acl::from_grants(&["a/#/b".into()], &[]).is_err());
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("$SYS".to_string()),
            Just("111111".to_string()),
            Just("222222".to_string()),
            "[a-c]{1,2}",
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("MQTT topics are never empty", |t| !t.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..5),
            any::<bool>(),
        )
            .prop_map(|(mut levels, multi)| {
                if multi {
                    levels.push("#".into());
                }
                levels.join("/")
            })
            .prop_filter("MQTT filters are never empty", |f| !f.is_empty())
    }

    fn grants() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(prop_oneof![filter(), Just("/111111/#".to_string())], 1..3)
    }

    proptest! {
        #[test]
        fn a_topic_inside_an_allowed_subscription_is_receivable(
            subs in grants(), requested in filter(), t in topic()
        ) {
            let acl = Acl::from_grants(&subs, &[]).expect("generated grants are valid");
            let requested_filter = TopicFilter::parse(&requested).expect("generated filter is valid");
            let name = TopicName::parse(&t).expect("generated topic is valid");
            if acl.may_subscribe(&requested) && requested_filter.covers_topic(&name) {
                prop_assert!(acl.may_receive(&t));
            }
        }

        #[test]
        fn the_prefix_shortcut_decides_as_the_full_rules_do(
            g in grants(),
            t in prop_oneof![
                topic(),
                "\\PC{0,24}",
                "[/1#+\u{0}a\u{e9}]{0,12}",
                "/111111/[a#+\u{0}/\u{e9}]{0,10}",
            ],
        ) {
            let acl = Acl::from_grants(&g, &g).expect("generated grants are valid");
            let full = |grants: &[TopicFilter]| {
                TopicName::validate(&t).is_ok() && grants.iter().any(|f| f.covers_valid_topic(&t))
            };
            // Publishing also keeps out of a session's system sub-trees, whatever the grants.
            prop_assert_eq!(
                acl.may_publish(&t),
                full(&acl.publish) && !is_reserved_for_system(&t)
            );
            prop_assert_eq!(acl.may_receive(&t), full(&acl.subscribe));
        }

        #[test]
        fn a_filter_always_covers_itself(f in filter()) {
            let parsed = TopicFilter::parse(&f).expect("generated filter is valid");
            prop_assert!(parsed.covers_filter(&parsed));
        }

        #[test]
        fn parse_and_print_round_trip(f in filter(), t in topic()) {
            let parsed = TopicFilter::parse(&f).expect("generated filter is valid");
            prop_assert_eq!(parsed.to_string(), f);
            let parsed = TopicName::parse(&t).expect("generated topic is valid");
            prop_assert_eq!(parsed.to_string(), t);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = TopicFilter::parse(&s);
            let _ = TopicName::parse(&s);
        }
    }
}
