//! Reading `AsyncEndpointScaling` manifests from (multi-document) YAML, with the checks the API
//! server would make: apiVersion/kind, unknown fields, types, bounds and CEL rules.

use serde_json::Value;

use crate::shown::{quoted, shortened};
use crate::{AsyncEndpointScaling, validate_spec};

/// A resource read from a manifest, with where it came from.
#[derive(Debug, Clone)]
pub struct ParsedResource {
    /// 1-based index of the YAML document in its file.
    pub document: usize,
    pub resource: AsyncEndpointScaling,
}

/// Everything wrong with one manifest file; each line names the document and the field.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct ManifestError {
    pub problems: Vec<String>,
}

const API_VERSION: &str = "asyncscale.io/v1alpha1";
const KIND: &str = "AsyncEndpointScaling";

/// Parses every document of `yaml`. `source` (a file name) prefixes each problem line.
/// Either every document is valid and all are returned, or nothing is.
pub fn parse_manifests(source: &str, yaml: &str) -> Result<Vec<ParsedResource>, ManifestError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| ManifestError {
        problems: vec![yaml_problem(source, &e)],
    })?;
    // The same documents with only YAML 1.2's booleans and with numbers kept as spelt, read only
    // when a value must be shown as written (`y`, which the reading above, like kubectl's,
    // takes for `true`).
    let as_written = std::cell::OnceCell::new();
    let as_written = |index: usize, pointer: &str| {
        let documents = as_written.get_or_init(|| {
            let options = serde_saphyr::options! {
                strict_booleans: true,
                leading_zero_numbers_as_strings: true,
                underscored_numbers_as_strings: true,
            };
            serde_saphyr::from_multiple_with_options::<Value>(yaml, options).unwrap_or_default()
        });
        let value = documents.get(index)?.pointer(pointer)?;
        value.as_str().map(str::to_string)
    };
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let number = index + 1;
        let written = |pointer: &str| as_written(index, pointer);
        match parse_document(document, &written) {
            Ok(resource) => parsed.push(ParsedResource {
                document: number,
                resource,
            }),
            Err((name, errors)) => {
                let at = match name {
                    Some(name) => format!("{source}: document {number} ({name})"),
                    None => format!("{source}: document {number}"),
                };
                problems.extend(errors.into_iter().map(|e| format!("{at}: {e}")));
            }
        }
    }
    if parsed.is_empty() && problems.is_empty() {
        problems.push(format!("{source}: no {KIND} documents found"));
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(ManifestError { problems })
    }
}

/// A YAML error in our words, at one position in the file the user named: the parser's own
/// text speaks of its options and policies, names `<input>`, and gives the place twice.
fn yaml_problem(source: &str, e: &serde_saphyr::Error) -> String {
    use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};
    let mut inner = e.without_snippet();
    while let Error::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let at = match inner.location().or_else(|| e.location()) {
        Some(l) if l.line() > 0 => format!("{source}:{}:{}", l.line(), l.column()),
        _ => source.to_string(),
    };
    let what = match inner {
        Error::DuplicateMappingKey { key: Some(key), .. } => {
            format!("the key `{key}` appears twice in one mapping; keep one")
        }
        Error::DuplicateMappingKey { key: None, .. } => {
            "a key appears twice in one mapping; keep one".to_string()
        }
        Error::NonFiniteFloat { value, .. } => {
            format!("{value} is not a finite number, which no field takes; quote it if it is text")
        }
        Error::UnknownAnchor { .. } => {
            "this alias (*name) refers to no anchor (&name) defined before it".to_string()
        }
        other => UserMessageFormatter.format_message(other).into_owned(),
    };
    format!("{at}: invalid YAML: {}", shortened(&one_line(&what)))
}

type DocumentProblems = (Option<String>, Vec<String>);

/// `written` gives the text of a scalar, by JSON pointer, as the document spells it when YAML
/// 1.2 reads it as a string.
fn parse_document(
    document: Value,
    written: &dyn Fn(&str) -> Option<String>,
) -> Result<AsyncEndpointScaling, DocumentProblems> {
    let name_value = document.pointer("/metadata/name");
    let name = name_value.and_then(Value::as_str).map(str::to_string);
    let namespace = document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let label = match (namespace, &name) {
        (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
        _ => name.clone(),
    }
    .map(|l| shorten(&l));
    let fail = |errors: Vec<String>| (label.clone(), errors);
    let api_version = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != API_VERSION || kind != KIND {
        return Err(fail(vec![format!(
            "expected apiVersion {API_VERSION} and kind {KIND}, found apiVersion {} and kind {}",
            quoted(api_version),
            quoted(kind)
        )]));
    }
    // Before the type check, so that a misspelt field is named beside the required one it
    // leaves missing.
    let mut unknown = Vec::new();
    unknown_fields(&document, top_schema(), "", &mut unknown);
    let with_unknown = |mut errors: Vec<String>| {
        errors.extend(unknown.iter().cloned());
        fail(errors)
    };
    if let Some(value @ (Value::Bool(_) | Value::Number(_))) = name_value {
        return Err(with_unknown(vec![unquoted(
            "metadata.name",
            value,
            written("/metadata/name"),
        )]));
    }
    if name.as_deref().unwrap_or("").is_empty() {
        return Err(with_unknown(vec![
            "metadata.name: required: give the resource a name".into(),
        ]));
    }
    // What the API server refuses, refused here too (Kubernetes' DNS-1123 rules).
    let mut meta_errors = Vec::new();
    if let Some(n) = name.as_deref()
        && !is_dns_subdomain(n)
    {
        meta_errors.push(format!(
            "metadata.name: {:?} is not a valid name: at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
            shorten(n)
        ));
    }
    if let Some(ns) = namespace
        && !is_dns_label(ns)
    {
        meta_errors.push(format!(
            "metadata.namespace: {:?} is not a valid namespace: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            shorten(ns)
        ));
    }
    if !meta_errors.is_empty() {
        return Err(with_unknown(meta_errors));
    }
    let resource: AsyncEndpointScaling = serde_path_to_error::deserialize(&document)
        .map_err(|e| with_unknown(vec![describe_type_error(&e, &document, written)]))?;
    let mut errors = unknown;
    if let Err(field_errors) = validate_spec(&resource.spec) {
        errors.extend(field_errors.iter().map(ToString::to_string));
    }
    if errors.is_empty() {
        Ok(resource)
    } else {
        Err(fail(errors))
    }
}

fn describe_type_error(
    e: &serde_path_to_error::Error<serde_json::Error>,
    document: &Value,
    written: &dyn Fn(&str) -> Option<String>,
) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    if let Some(field) = inner.strip_prefix("missing field ") {
        let field = field.trim_matches('`');
        let at = if path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return format!("{at}: required field is missing");
    }
    // A boolean or number where text belongs: almost always a value left unquoted.
    if inner.ends_with(", expected a string") {
        let pointer = json_pointer(e.path());
        if let Some(value @ (Value::Bool(_) | Value::Number(_))) = document.pointer(&pointer) {
            return unquoted(&path, value, written(&pointer));
        }
    }
    format!("{path}: {}", shortened(&inner))
}

/// `metadata.name: the unquoted y is read as the boolean true, not as text; quote it: name: "y"`.
/// `as_written` is the value as the document spells it, when known.
fn unquoted(path: &str, value: &Value, as_written: Option<String>) -> String {
    let read_as = match value {
        Value::Bool(b) => format!("the boolean {b}"),
        _ => format!("the number {}", shorten(&value.to_string())),
    };
    // A float's spelling is not kept (`1e3` reads as 1000.0); a whole number's or a boolean's
    // is, but for case and signs.
    let spelling = as_written.or_else(|| match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if !n.is_f64() => Some(n.to_string()),
        _ => None,
    });
    let Some(text) = spelling else {
        return format!(
            "{path}: an unquoted value is read as {read_as}, not as text; quote it as you wrote it"
        );
    };
    // The field as it is written in the file: `name: "y"`, or just `"y"` in a list.
    let quoted_text = quoted(&text);
    let fix = match path.rsplit_once('.').map_or(path, |(_, last)| last) {
        key if !key.is_empty() && !key.ends_with(']') => format!("{key}: {quoted_text}"),
        _ => quoted_text,
    };
    format!(
        "{path}: the unquoted {} is read as {read_as}, not as text; quote it: {fix}",
        shorten(&text)
    )
}

/// serde_path_to_error's path as a JSON pointer into the document.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } => pointer.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => pointer.push_str(variant),
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

/// The schema of the whole resource as the API server checks it: the CRD's for spec and
/// ObjectMeta's for metadata (the CRD leaves metadata to the API server).
fn top_schema() -> &'static Value {
    static SCHEMA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        let mut schema = crate::crd()
            .pointer("/spec/versions/0/schema/openAPIV3Schema")
            .cloned()
            .expect("the CRD has a schema");
        let metadata =
            schemars::schema_for!(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta);
        schema["properties"]["metadata"] =
            serde_json::to_value(metadata).expect("a schema always serialises");
        schema
    });
    &SCHEMA
}

/// Fields present in the input but not in the schema are unknown (the API server prunes or,
/// under `kubectl --validate=strict`, rejects them); one close to a known field is named as
/// its likely misspelling. `status` is not the author's to give, so it is not compared.
fn unknown_fields(input: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    // A list's items, each against the schema of an item (`spec.schedules[0].timezone`).
    if let (Value::Array(items), Some(item_schema)) = (input, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            unknown_fields(item, item_schema, &format!("{path}[{i}]"), out);
        }
        return;
    }
    // An object without properties in its schema is a map (labels) or free-form: any key.
    let (Value::Object(input), Some(Value::Object(known))) = (input, schema.get("properties"))
    else {
        return;
    };
    for (key, value) in input {
        // A key that could be a field name is shown as written; anything else (huge, with
        // spaces or line breaks) quoted and cut, and without a `kubectl explain` hint.
        let plain =
            key.chars().count() <= 64 && !key.chars().any(|c| c.is_whitespace() || c.is_control());
        let shown_key = if plain { key.clone() } else { quoted(key) };
        let child = if path.is_empty() {
            shown_key
        } else {
            format!("{path}.{shown_key}")
        };
        let top_level = ["apiVersion", "kind", "metadata", "spec"];
        if path.is_empty() && !top_level.contains(&key.as_str()) {
            if key != "status" {
                let hint = match misspelling_of(key, top_level) {
                    Some(field) => format!("did you mean {field}?"),
                    None => format!("an {KIND} has apiVersion, kind, metadata and spec"),
                };
                out.push(format!("{child}: unknown field; {hint}"));
            }
            continue;
        }
        match known.get(key) {
            Some(child_schema) => unknown_fields(value, child_schema, &child, out),
            // apiVersion and kind, checked before this and not in the CRD's schema.
            None if path.is_empty() => {}
            None if !plain => out.push(format!("{child}: unknown field")),
            None => match misspelling_of(key, known.keys().map(String::as_str)) {
                Some(field) => out.push(format!("{child}: unknown field; did you mean {field}?")),
                None => out.push(format!(
                    "{child}: unknown field; check its spelling against `kubectl explain aes.{}`",
                    explain_path(path)
                )),
            },
        }
    }
}

/// The one known field `key` is a likely misspelling of: the nearest in edits (ignoring case,
/// a swap of two letters counting as one), if near enough for its length and nearer than any
/// other.
fn misspelling_of<'a>(key: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if key.chars().nth(64).is_some() {
        return None; // no field name is that long; and the table below grows with the key
    }
    let key: Vec<char> = key.to_lowercase().chars().collect();
    let mut best: Option<(usize, &str)> = None;
    let mut tied = false;
    for field in known {
        let candidate: Vec<char> = field.to_lowercase().chars().collect();
        let distance = edit_distance(&key, &candidate);
        if distance > (candidate.len() / 4).max(1) {
            continue;
        }
        match best {
            Some((nearest, _)) if distance > nearest => {}
            Some((nearest, _)) if distance == nearest => tied = true,
            _ => {
                best = Some((distance, field));
                tied = false;
            }
        }
    }
    best.filter(|_| !tied).map(|(_, field)| field)
}

/// Insertions, deletions, substitutions and swaps of neighbours that turn `a` into `b`
/// (optimal string alignment distance).
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// `spec.schedules[0]` as `kubectl explain` takes it: `spec.schedules`.
fn explain_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

/// Letters, digits and '-', starting and ending with a letter or digit (one part of a DNS-1123 name).
fn is_dns_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.chars().all(|c| alnum(c) || c == '-') && s.starts_with(alnum) && s.ends_with(alnum)
}

/// Kubernetes' DNS-1123 label: namespaces.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_part(s)
}

/// Kubernetes' DNS-1123 subdomain: names of custom resources (k8s.io/apimachinery
/// `IsDNS1123Subdomain`: at most 253 characters, parts joined by '.').
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_part)
}

/// A value as it appears in an error message: cut to a readable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} characters)", &s[..cut], s.chars().count()),
        None => s.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
