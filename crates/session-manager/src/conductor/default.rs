//! The `default` conductor, which every session type without a conductor of its own gets:
//! it answers `state`, `start` and `stop` with `"State"`, `"Start"` and `"Stop"`, as the
//! original service's default conductor did, and does nothing else (no loop, no MQTT).

use serde_json::{json, Value};

use super::{ApiMethod, Conductor, ConductorContext};

const API: &[ApiMethod] = &[
    ApiMethod::without_params("state"),
    ApiMethod::without_params("start"),
    ApiMethod::without_params("stop"),
];

/// The conductor that only answers.
#[derive(Debug, Default)]
pub struct DefaultConductor;

impl DefaultConductor {
    pub fn create(_context: ConductorContext) -> Box<dyn Conductor> {
        Box::new(DefaultConductor)
    }
}

impl Conductor for DefaultConductor {
    fn name(&self) -> &'static str {
        "default"
    }

    fn api(&self) -> &'static [ApiMethod] {
        API
    }

    fn call(&self, method: &str, _params: &Value) -> Option<String> {
        let answer = match method {
            "state" => "State",
            "start" => "Start",
            "stop" => "Stop",
            _ => return None,
        };
        Some(answer.to_owned())
    }

    fn state(&self) -> Value {
        json!({})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_the_original_default_conductor() {
        let conductor = DefaultConductor;
        for (method, answer) in [("state", "State"), ("start", "Start"), ("stop", "Stop")] {
            assert_eq!(
                conductor.call(method, &Value::Null).as_deref(),
                Some(answer)
            );
        }
        assert_eq!(conductor.call("pause", &Value::Null), None);
        assert_eq!(conductor.call("State", &json!("x")), None);
        assert!(!conductor.is_started());
        let api = serde_json::to_value(conductor.api()).expect("serializes");
        assert_eq!(
            api,
            json!([
                {"method": "state", "params": []},
                {"method": "start", "params": []},
                {"method": "stop", "params": []}
            ])
        );
    }
}
