//! The OpenAI-compatible chat-completions wire format: the request body, the response's
//! content and usage, and the strict parsing of a label out of the answer.

use serde_json::{Value, json};

use super::OutputMode;

/// Token counts of one response (`usage` field; zero where the server omits it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The JSON schema of an answer: `{"label": 0 | 1 | 2}` and nothing else.
pub fn label_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "label": { "type": "integer", "enum": [0, 1, 2] } },
        "required": ["label"],
        "additionalProperties": false
    })
}

/// The instruction appended to the guideline for an output mode.
pub fn answer_instruction(mode: OutputMode) -> &'static str {
    match mode {
        OutputMode::JsonSchema => {
            "Answer with a JSON object {\"label\": L} where L is 0, 1 or 2, and nothing else."
        }
        OutputMode::Digit => "Answer with a single digit, 0, 1 or 2, and nothing else.",
    }
}

/// The user message for one pair.
pub fn user_message(query: &str, item_text: &str) -> String {
    format!("Query: {query}\nProduct: {item_text}\nLabel:")
}

/// The request body for one pair.
pub fn request_body(
    model: &str,
    system: &str,
    query: &str,
    item_text: &str,
    mode: OutputMode,
    max_completion_tokens: u32,
    temperature: f32,
) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            { "role": "system", "content": system },
            { "role": "user", "content": user_message(query, item_text) }
        ],
        "temperature": temperature,
        "max_tokens": max_completion_tokens,
        "stream": false
    });
    if mode == OutputMode::JsonSchema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": { "name": "relevance_label", "strict": true, "schema": label_schema() }
        });
    }
    body
}

/// Why an answer could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The response body is not a chat completion (`choices[0].message.content`).
    NotACompletion(String),
    /// The content does not follow the answer format.
    BadAnswer(String),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::NotACompletion(e) => write!(f, "not a chat completion: {e}"),
            Malformed::BadAnswer(c) => write!(f, "answer does not follow the format: {c:?}"),
        }
    }
}

/// Reads the usage counts of a response body (zero when absent or not JSON).
pub fn parse_usage(body: &Value) -> Usage {
    let u = &body["usage"];
    Usage {
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
    }
}

/// The message content of a chat-completion response body.
pub fn parse_content(body: &Value) -> Result<&str, Malformed> {
    body["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| Malformed::NotACompletion("no choices[0].message.content string".into()))
}

/// Parses a label out of an answer, strictly: in JSON mode the whole answer (surrounding white
/// space aside) must be an object with exactly the integer field `label` in 0..=2; in digit
/// mode it must be exactly one digit 0, 1 or 2. Anything else (extra text, another digit, a
/// string label) is malformed: never guessed.
pub fn parse_label(content: &str, mode: OutputMode) -> Result<u8, Malformed> {
    let bad = || Malformed::BadAnswer(content.chars().take(200).collect());
    let t = content.trim();
    match mode {
        OutputMode::Digit => match t {
            "0" => Ok(0),
            "1" => Ok(1),
            "2" => Ok(2),
            _ => Err(bad()),
        },
        OutputMode::JsonSchema => {
            let v: Value = serde_json::from_str(t).map_err(|_| bad())?;
            let obj = v.as_object().ok_or_else(bad)?;
            if obj.len() != 1 {
                return Err(bad());
            }
            match obj.get("label").and_then(Value::as_u64) {
                Some(l @ 0..=2) => Ok(l as u8),
                _ => Err(bad()),
            }
        }
    }
}

/// Per-class probabilities from the `logprobs` of a response: at the first answer token that
/// is the chosen digit, the probabilities of the tokens `0`, `1` and `2` among its
/// `top_logprobs`, renormalised. `None` when the response carries no usable log-probabilities.
pub fn parse_label_probs(body: &Value, label: u8) -> Option<[f32; 3]> {
    let tokens = body["choices"][0]["logprobs"]["content"].as_array()?;
    let digit = char::from(b'0' + label).to_string();
    let at = tokens
        .iter()
        .find(|t| t["token"].as_str().is_some_and(|s| s.trim() == digit))?;
    let mut p = [0f64; 3];
    for alt in at["top_logprobs"].as_array()? {
        let (Some(tok), Some(lp)) = (alt["token"].as_str(), alt["logprob"].as_f64()) else {
            continue;
        };
        if let Some(k) = ["0", "1", "2"].iter().position(|d| *d == tok.trim()) {
            p[k] = p[k].max(lp.exp());
        }
    }
    let total: f64 = p.iter().sum();
    if total <= 0.0 || p[usize::from(label)] == 0.0 {
        return None;
    }
    Some(p.map(|x| (x / total) as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json_answers() {
        let m = OutputMode::JsonSchema;
        assert_eq!(parse_label("{\"label\": 2}", m), Ok(2));
        assert_eq!(parse_label(" {\"label\":0}\n", m), Ok(0));
        for bad in [
            "{\"label\": 3}",
            "{\"label\": \"2\"}",
            "{\"label\": 1.5}",
            "{\"label\": -1}",
            "{\"label\": 1, \"why\": \"x\"}",
            "label: 2",
            "{\"label\": 2} because",
            "2",
            "",
        ] {
            assert!(parse_label(bad, m).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn strict_digit_answers() {
        let m = OutputMode::Digit;
        assert_eq!(parse_label("1", m), Ok(1));
        assert_eq!(parse_label(" 2\n", m), Ok(2));
        for bad in ["3", "12", "2.", "Label: 2", "two", "{\"label\": 2}", ""] {
            assert!(parse_label(bad, m).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn label_probabilities_from_logprobs() {
        let body = json!({"choices": [{"logprobs": {"content": [
            {"token": "{\"", "logprob": 0.0, "top_logprobs": []},
            {"token": " 2", "logprob": -0.2, "top_logprobs": [
                {"token": " 2", "logprob": (0.6f64).ln()},
                {"token": " 1", "logprob": (0.3f64).ln()},
                {"token": "x", "logprob": (0.05f64).ln()},
                {"token": "0", "logprob": (0.05f64).ln()}
            ]}
        ]}}]});
        let p = parse_label_probs(&body, 2).unwrap();
        let want = [0.05 / 0.95, 0.3 / 0.95, 0.6 / 0.95];
        for k in 0..3 {
            assert!((f64::from(p[k]) - want[k]).abs() < 1e-6, "{p:?}");
        }
        assert_eq!(parse_label_probs(&body, 0), None);
        assert_eq!(parse_label_probs(&json!({"choices": [{}]}), 2), None);
    }

    #[test]
    fn request_carries_schema_only_in_json_mode() {
        let b = request_body("m", "sys", "q", "item", OutputMode::JsonSchema, 16, 0.0);
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(
            b["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"],
            json!([0, 1, 2])
        );
        assert_eq!(
            b["messages"][1]["content"],
            "Query: q\nProduct: item\nLabel:"
        );
        let d = request_body("m", "sys", "q", "item", OutputMode::Digit, 16, 0.0);
        assert!(d.get("response_format").is_none());
    }
}
