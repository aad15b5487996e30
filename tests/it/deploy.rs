//! The deployment (deploy/, cloudbuild-job.yaml, the README's deploy sections) checked against
//! the workspace it deploys, so it stays true while the CLIs change. Everything is derived at
//! test time from the built binaries (`--help` of every subcommand), the Cargo manifests, the
//! Dockerfile and the sources. The lists kept here — env vars read outside clap, set by Cloud
//! Run, or process conventions — give a reason per entry, and the sources are scanned so they
//! cannot go stale:
//!
//! - every YAML file parses, and every template renders with deploy/render.sh;
//! - every env var and flag the binaries accept is documented (deploy/ or the README); every env
//!   var a template sets is read by the binary of that container, is not reserved by Cloud Run,
//!   and is not a secret set in plain text; env vars read outside clap are listed with a reason;
//! - commands of our binaries and of `gcloud` written in deploy files name real subcommands and
//!   flags (gcloud's when its SDK is installed);
//! - the image ships exactly the workspace's non-test binaries and runs as non-root;
//! - cloudbuild-job.yaml deploys the job of deploy/job.yaml with the same settings;
//! - the Cloud Scheduler job's OIDC audience and email are what `orchestrator serve` verifies;
//! - the log-based metrics match the job's final log lines; IAM covers what the specs use.
//!
//! No network and no Docker: shellcheck and the gcloud SDK are used when installed and skipped
//! with a message otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

// ---------------------------------------------------------------------------------------------
// The repository

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Files under `rel`, recursively, as sorted paths relative to the workspace root.
fn files_under(rel: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "target") {
                    continue;
                }
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let r = root();
    let mut found = Vec::new();
    walk(&r.join(rel), &mut found);
    let mut v: Vec<String> =
        found.iter().map(|p| p.strip_prefix(&r).expect("under root").to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn deploy_files() -> Vec<String> {
    files_under("deploy")
}

fn yaml_files() -> Vec<String> {
    let mut v: Vec<String> =
        deploy_files().into_iter().filter(|f| f.ends_with(".yaml") || f.ends_with(".yml")).collect();
    v.push("cloudbuild-job.yaml".into());
    v
}

/// Every executable script of the project: the deploy scripts, the dev scripts, CI and the
/// benchmarks (`scripts/lib.sh` is sourced, not run, and is checked through its users).
fn shell_scripts() -> Vec<String> {
    let mut scripts: Vec<String> = deploy_files().into_iter().filter(|f| f.ends_with(".sh")).collect();
    for dir in ["scripts", "bench", "bench/upsert", ".ci"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap().flatten() {
            let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if (rel.ends_with(".sh") || rel == ".ci/run") && rel != "scripts/lib.sh" {
                scripts.push(rel);
            }
        }
    }
    scripts.sort();
    scripts
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn seq(v: &Value) -> Vec<Value> {
    v.as_sequence().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    seq(v).iter().filter_map(scalar).collect()
}

/// `${NAME}` placeholders of a template (upper-case names, what deploy/render.sh fills in).
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find('}') {
            let name = &rest[..end];
            if !name.is_empty()
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// A stand-in value for each placeholder, as a user would export it.
fn sample_value(name: &str) -> String {
    match name {
        "PROJECT_ID" => "my-project".into(),
        "REGION" => "europe-west1".into(),
        "TAG" => "v1".into(),
        other => format!("sample-{}", other.to_ascii_lowercase().replace('_', "-")),
    }
}

fn render_sample(text: &str) -> String {
    let mut out = text.to_string();
    for name in placeholders(text) {
        out = out.replace(&format!("${{{name}}}"), &sample_value(&name));
    }
    out
}

/// True when `token` occurs in `text` not as part of a longer word (letters, digits, `_`, `-`).
fn has_token(text: &str, token: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut start = 0;
    while let Some(i) = text[start..].find(token) {
        let at = start + i;
        let end = at + token.len();
        let before = text[..at].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(word) && !after.is_some_and(word) {
            return true;
        }
        start = at + 1;
    }
    false
}

/// A README section's body, from `## title` to the next `## ` heading.
fn readme_section(readme: &str, title: &str) -> String {
    let head = format!("## {title}\n");
    let start = readme.find(&head).unwrap_or_else(|| panic!("README.md has no section `## {title}`"));
    let body = &readme[start + head.len()..];
    let end = body.find("\n## ").map(|i| i + 1).unwrap_or(body.len());
    body[..end].to_string()
}

const DEPLOY_SECTIONS: [&str; 2] = ["Deploy to Google Cloud", "Migrating from the service"];

/// Where settings may be documented: the README and every file of the deployment.
fn documentation() -> String {
    let mut text = read("README.md");
    for f in deploy_files().iter().chain(std::iter::once(&"cloudbuild-job.yaml".to_string())) {
        text.push('\n');
        text.push_str(&read(f));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The binaries, from their --help

const BINARIES: [&str; 3] = ["job", "orchestrator", "jobctl"];
/// The binary a Cloud Run Job task runs: the image's ENTRYPOINT, and what deploy/job.yaml runs.
const JOB_BIN: &str = "job";

#[derive(Debug, Clone)]
struct Opt {
    flag: String,
    env: Option<String>,
}

#[derive(Debug, Clone)]
struct Cmd {
    bin: String,
    path: Vec<String>,
    help: String,
    opts: Vec<Opt>,
    /// Env vars and whether their values are hidden in the help (clap's `hide_env_values`,
    /// which this workspace uses for secrets).
    envs: BTreeMap<String, bool>,
    subcommands: Vec<String>,
}

impl Cmd {
    fn name(&self) -> String {
        std::iter::once(self.bin.as_str()).chain(self.path.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
    fn accepts(&self, flag: &str) -> bool {
        flag == "help" || flag == "version" || self.opts.iter().any(|o| o.flag == flag)
    }
}

fn help_of(bin: &str, path: &[String]) -> String {
    let out = Command::new(testkit::proc::bin(bin))
        .args(path)
        .arg("--help")
        .env("COLUMNS", "400")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} --help: {e}"));
    assert!(out.status.success(), "`{bin} {} --help` failed: {}", path.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--flag` of an option line (`--flag <V>` or `-f, --flag`).
fn option_flag(trimmed: &str) -> Option<String> {
    let b = trimmed.as_bytes();
    let rest = if let Some(r) = trimmed.strip_prefix("--") {
        r
    } else if b.len() > 6 && b[0] == b'-' && b[1].is_ascii_alphanumeric() && trimmed[2..].starts_with(", --") {
        &trimmed[6..]
    } else {
        return None;
    };
    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    (!name.is_empty()).then_some(name)
}

/// Every `[env: NAME…]` in `text`, with whether its value is hidden (`[env: NAME]`).
fn env_tags(text: &str) -> Vec<(String, bool)> {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let mut rest = flat.as_str();
    while let Some(i) = rest.find("[env:") {
        rest = rest[i + 5..].trim_start();
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let hidden = rest[name.len()..].starts_with(']');
        if !name.is_empty() {
            out.push((name, hidden));
        }
    }
    out
}

fn parse_help(text: &str) -> (Vec<Opt>, BTreeMap<String, bool>, Vec<String>) {
    let mut subcommands = Vec::new();
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut in_commands = false;
    // Options are listed under `Options:` and custom headings (`Postgres (…):`); indented lines
    // under `Examples:` are examples, not options.
    let mut in_options = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        if line.len() == trimmed.len() {
            // A heading (`Options:`, `Commands:`, `Usage: …`) or the about text.
            blocks.extend(current.take());
            let heading = trimmed.trim_end();
            in_commands = heading == "Commands:";
            in_options = heading.ends_with(':') && !in_commands && !heading.starts_with("Example");
            continue;
        }
        if in_commands {
            if line.starts_with("  ") && !line.starts_with("   ") {
                let word = trimmed.split_whitespace().next().unwrap_or("").trim_end_matches(',');
                if word != "help" && !word.is_empty() {
                    subcommands.push(word.to_string());
                }
            }
            continue;
        }
        if !in_options {
            continue;
        }
        if let Some(flag) = option_flag(trimmed) {
            blocks.extend(current.take());
            current = Some((flag, trimmed.to_string()));
        } else if let Some((_, t)) = current.as_mut() {
            t.push(' ');
            t.push_str(trimmed);
        }
    }
    blocks.extend(current.take());
    let opts = blocks
        .into_iter()
        .map(|(flag, block)| Opt { env: env_tags(&block).into_iter().next().map(|(n, _)| n), flag })
        .collect();
    let envs = env_tags(text).into_iter().collect();
    (opts, envs, subcommands)
}

/// The binary's help, and that of every subcommand listed in it, recursively.
fn commands(bin: &str) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    while let Some(path) = queue.pop() {
        let help = help_of(bin, &path);
        let (opts, envs, subcommands) = parse_help(&help);
        if path.len() < 4 {
            for s in &subcommands {
                let mut p = path.clone();
                p.push(s.clone());
                queue.push(p);
            }
        }
        out.push(Cmd { bin: bin.to_string(), path, help, opts, envs, subcommands });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn all_commands() -> Vec<Cmd> {
    BINARIES.iter().flat_map(|b| commands(b)).collect()
}

fn find_cmd<'a>(cmds: &'a [Cmd], bin: &str, path: &[String]) -> Option<&'a Cmd> {
    cmds.iter().find(|c| c.bin == bin && c.path == path)
}

/// Env vars `bin` reads through clap (any subcommand).
fn clap_envs(cmds: &[Cmd], bin: &str) -> BTreeMap<String, bool> {
    let mut m = BTreeMap::new();
    for c in cmds.iter().filter(|c| c.bin == bin) {
        for (k, v) in &c.envs {
            *m.entry(k.clone()).or_insert(false) |= *v;
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Env vars outside clap

/// Set by Cloud Run in every container of a service or job. Templates must not set them
/// (Cloud Run refuses or overrides them); the binaries may read them.
const SET_BY_CLOUD_RUN: &[(&str, &str)] = &[
    ("PORT", "services: the port to listen on; `orchestrator serve` listens on 0.0.0.0:$PORT"),
    ("K_SERVICE", "services: the service name; read to detect Cloud Run (postgres_upsert environment)"),
    ("K_REVISION", "services: the revision name"),
    ("K_CONFIGURATION", "services: the configuration name"),
    ("CLOUD_RUN_JOB", "jobs: the job name; read to detect Cloud Run (postgres_upsert environment)"),
    ("CLOUD_RUN_EXECUTION", "jobs: the execution name"),
    ("CLOUD_RUN_TASK_INDEX", "jobs: the task's index; the job picks its id from a JOB_CONFIG_ID list with it"),
    ("CLOUD_RUN_TASK_ATTEMPT", "jobs: the task's retry number"),
    ("CLOUD_RUN_TASK_COUNT", "jobs: the number of tasks of the execution"),
];

/// Settings the binaries read with `std::env` instead of through clap, so `--help` does not list
/// them. They must be documented like the others; the sources are scanned for such reads, and
/// each must be listed here (or below) with a reason.
const READ_OUTSIDE_CLAP: &[(&str, &str)] = &[
    ("RUST_LOG", "log filter; tracing-subscriber's EnvFilter reads it (shared/src/telemetry.rs)"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "Application Default Credentials key file (shared/src/google/auth.rs)"),
    ("GOOGLE_CLOUD_PROJECT", "the orchestrator's fallback for --cloud-run-project"),
    ("ENVIRONMENT", "local/staging/production for postgres_upsert; production refuses --skip-backup"),
    ("IMPORT_BATCH_SIZE", "postgres_upsert default batch size"),
    ("IMPORT_MAX_ROWS", "postgres_upsert default row limit"),
    ("IMPORT_TIMEOUT_SECONDS", "postgres_upsert default statement timeout"),
    ("IMPORT_BACKUP_DIR", "postgres_upsert backup directory"),
    ("PG_DUMP", "the pg_dump binary postgres_upsert backs up with"),
];

/// Conventions of any Unix process: read, but not settings of this product. Not documented, and
/// never set by the templates.
const PROCESS_CONVENTIONS: &[(&str, &str)] = &[
    ("HOME", "where gcloud's application-default credentials file is looked for"),
    ("HOSTNAME", "names the process in job_runs.lease_owner"),
    ("TERM", "jobctl: no colour on a dumb terminal"),
    ("NO_COLOR", "jobctl: no colour when set (no-color.org)"),
];

fn listed(table: &[(&str, &str)], name: &str) -> bool {
    table.iter().any(|(n, _)| *n == name)
}

/// Env var names the workspace's sources read directly: `var("NAME")`, `var_os("NAME")`, and
/// RUST_LOG through EnvFilter's default env.
fn env_reads_in_sources() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in ["shared/src", "job/src", "orchestrator/src"] {
        for f in files_under(dir).into_iter().filter(|f| f.ends_with(".rs")) {
            let text = read(&f);
            for pat in ["var(\"", "var_os(\""] {
                let mut start = 0;
                while let Some(i) = text[start..].find(pat) {
                    let at = start + i;
                    start = at + pat.len();
                    if text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        continue;
                    }
                    let name: String = text[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !name.is_empty() && text[start + name.len()..].starts_with('"') {
                        out.entry(name).or_insert_with(|| f.clone());
                    }
                }
            }
            if text.contains("from_default_env") {
                out.entry("RUST_LOG".to_string()).or_insert_with(|| f.clone());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile and the Cargo manifests

#[derive(Debug)]
struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

fn dockerfile() -> Vec<Stage> {
    let text = read("deploy/Dockerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            if !cur.trim().is_empty() {
                logical.push(cur.trim().to_string());
            }
            cur.clear();
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (instr, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let instr = instr.to_ascii_uppercase();
        let args = args.trim().to_string();
        if instr == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let from = words.iter().find(|w| !w.starts_with("--")).copied().unwrap_or("").to_string();
            let name = words.windows(2).find(|w| w[0].eq_ignore_ascii_case("as")).map(|w| w[1].to_string());
            stages.push(Stage { from, name, instructions: Vec::new() });
        } else if let Some(s) = stages.last_mut() {
            s.instructions.push((instr, args));
        }
    }
    stages
}

/// `["a", "b"]` (exec form) or `a b` (shell form).
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(args).unwrap_or_else(|_| args.split_whitespace().map(String::from).collect())
}

fn basename(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_string()
}

/// The binary the image runs by default (its ENTRYPOINT).
fn entrypoint_bin() -> String {
    let stages = dockerfile();
    let last = stages.last().expect("deploy/Dockerfile has a stage");
    let ep =
        last.instructions.iter().rev().find(|(i, _)| i == "ENTRYPOINT").expect("the final stage has an ENTRYPOINT");
    basename(exec_form(&ep.1).first().expect("ENTRYPOINT names a program"))
}

fn workspace_members() -> Vec<String> {
    let text = read("Cargo.toml");
    let start = text.find("members").expect("[workspace] members");
    let open = start + text[start..].find('[').expect("members = [");
    let close = open + text[open..].find(']').expect("members = […]");
    text[open + 1..close].split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()).collect()
}

/// The binaries a member crate builds: its `[[bin]]` sections plus Cargo's auto-discovered ones.
fn member_bins(member: &str) -> Vec<String> {
    let text = read(&format!("{member}/Cargo.toml"));
    let mut section = String::new();
    let mut package = None;
    let mut autobins = true;
    let mut bins: Vec<(Option<String>, Option<String>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_string();
            if section == "[[bin]]" {
                bins.push((None, None));
            }
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim().trim_matches('"').to_string());
        match (section.as_str(), k) {
            ("[package]", "name") => package = Some(v),
            ("[package]", "autobins") => autobins = v != "false",
            ("[[bin]]", "name") => bins.last_mut().expect("[[bin]]").0 = Some(v),
            ("[[bin]]", "path") => bins.last_mut().expect("[[bin]]").1 = Some(v),
            _ => {}
        }
    }
    let package = package.unwrap_or_else(|| panic!("{member}/Cargo.toml has no package name"));
    let explicit_paths: BTreeSet<String> = bins.iter().filter_map(|b| b.1.clone()).collect();
    let mut out: Vec<String> = bins.iter().map(|b| b.0.clone().unwrap_or_else(|| package.clone())).collect();
    if autobins {
        let dir = root().join(member);
        if dir.join("src/main.rs").exists() && !explicit_paths.contains("src/main.rs") && !out.contains(&package) {
            out.push(package.clone());
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("src/bin")) {
            for e in rd.flatten() {
                let p = e.path();
                let rel = format!("src/bin/{}", p.file_name().unwrap().to_string_lossy());
                if p.extension().is_some_and(|x| x == "rs") && !explicit_paths.contains(&rel) {
                    let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                    if !out.contains(&stem) {
                        out.push(stem);
                    }
                }
            }
        }
    }
    out
}

/// The member holding test support only (its binaries are not shipped).
const TEST_MEMBER: &str = "tests";

fn shippable_bins() -> BTreeSet<String> {
    workspace_members().iter().filter(|m| m.as_str() != TEST_MEMBER).flat_map(|m| member_bins(m)).collect()
}

/// Docker's .dockerignore matching, for the patterns we use: `dir/`, `name`, `a/b`, `*`, `**`
/// and `!` exceptions; a pattern that matches a directory excludes what is under it.
fn dockerignored(patterns: &[String], path: &str) -> bool {
    fn glob(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
            (Some(pp), Some(ss)) => seg(pp, ss) && glob(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn seg(p: &str, s: &str) -> bool {
        match p.find('*') {
            None => p == s,
            Some(i) => {
                let (pre, post) = (&p[..i], &p[i + 1..]);
                s.starts_with(pre) && (0..=s.len().saturating_sub(pre.len())).any(|k| seg(post, &s[pre.len() + k..]))
            }
        }
    }
    let parts: Vec<&str> = path.split('/').collect();
    let mut ignored = false;
    for pat in patterns {
        let (neg, p) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat.as_str()),
        };
        let pp: Vec<&str> = p.trim_matches('/').split('/').collect();
        let hit = (1..=parts.len()).any(|n| glob(&pp, &parts[..n]));
        if hit {
            ignored = !neg;
        }
    }
    ignored
}

// ---------------------------------------------------------------------------------------------
// Cloud Run specs

#[derive(Debug, Clone)]
struct EnvEntry {
    name: String,
    value: Option<String>,
    /// (secret, version) for a Secret Manager reference.
    secret: Option<(String, String)>,
}

#[derive(Debug, Clone)]
struct Container {
    file: String,
    resource: String,
    kind: String,
    bin: String,
    args: Vec<String>,
    env: Vec<EnvEntry>,
    doc: Value,
    container: Value,
}

fn is_cloud_run(doc: &Value) -> bool {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    (api.starts_with("run.googleapis.com/") || api.starts_with("serving.knative.dev/"))
        && (kind == "Job" || kind == "Service")
}

/// The pod-level spec: `spec.template.spec` of a Service, `spec.template.spec.template.spec` of a Job.
fn pod_spec(doc: &Value) -> &Value {
    if doc["kind"] == "Job" {
        &doc["spec"]["template"]["spec"]["template"]["spec"]
    } else {
        &doc["spec"]["template"]["spec"]
    }
}

fn cloud_run_containers() -> Vec<Container> {
    let entry = entrypoint_bin();
    let mut out = Vec::new();
    for f in yaml_files() {
        let doc = yaml(&f);
        if !is_cloud_run(&doc) {
            continue;
        }
        let resource = doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{f}: metadata.name")).to_string();
        for c in seq(&pod_spec(&doc)["containers"]) {
            let command = strings(&c["command"]);
            let bin = command.first().map(|c| basename(c)).unwrap_or_else(|| entry.clone());
            let env = seq(&c["env"])
                .iter()
                .map(|e| EnvEntry {
                    name: scalar(&e["name"]).unwrap_or_else(|| panic!("{f}: an env entry without a name")),
                    value: scalar(&e["value"]),
                    secret: e["valueFrom"]["secretKeyRef"]["name"]
                        .as_str()
                        .map(|n| (n.to_string(), scalar(&e["valueFrom"]["secretKeyRef"]["key"]).unwrap_or_default())),
                })
                .collect();
            out.push(Container {
                file: f.clone(),
                resource: resource.clone(),
                kind: doc["kind"].as_str().unwrap_or("").to_string(),
                bin,
                args: strings(&c["args"]),
                env,
                doc: doc.clone(),
                container: c.clone(),
            });
        }
    }
    out
}

fn container_of<'a>(cs: &'a [Container], file: &str) -> &'a Container {
    cs.iter().find(|c| c.file == file).unwrap_or_else(|| panic!("{file} has no container"))
}

/// Which binary a Cloud Run resource (by name) runs, from the specs.
fn resource_bins(cs: &[Container]) -> BTreeMap<String, String> {
    cs.iter().map(|c| (c.resource.clone(), c.bin.clone())).collect()
}

/// `K=V,K2=V2` of `--set-env-vars` (also gcloud's `^D^K=V…` custom delimiter).
fn gcloud_pairs(v: &str) -> Vec<(String, String)> {
    let (delim, body) = match v.strip_prefix('^').and_then(|r| r.split_once('^')) {
        Some((d, b)) => (d.to_string(), b),
        None => (",".to_string(), v),
    };
    body.split(delim.as_str())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Commands written in files: ours and gcloud's

/// Text to look for commands in, and whether a command there must resolve (code) or may be
/// prose that merely names the program (comments, Markdown text).
struct Source {
    file: String,
    text: String,
    strict: bool,
}

fn join_continuations(text: &str) -> String {
    text.replace("\\\n", " ")
}

fn markdown_sources(file: &str, text: &str, out: &mut Vec<Source>) {
    let mut prose = String::new();
    let mut code = String::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let target = if in_code { &mut code } else { &mut prose };
        target.push_str(line);
        target.push('\n');
    }
    out.push(Source { file: file.into(), text: code, strict: true });
    out.push(Source { file: file.into(), text: prose, strict: false });
}

/// The deployment's files split into code and commentary, plus the README's deploy sections.
fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    let mut files = deploy_files();
    files.push("cloudbuild-job.yaml".into());
    for f in files {
        let text = read(&f);
        if f.ends_with(".md") {
            markdown_sources(&f, &text, &mut out);
            continue;
        }
        let mut code = String::new();
        let mut comments = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(c) = t.strip_prefix('#') {
                comments.push_str(c.trim_start_matches('#').trim_start());
                comments.push('\n');
            } else {
                code.push_str(line);
                code.push('\n');
            }
        }
        out.push(Source { file: f.clone(), text: join_continuations(&comments), strict: false });
        // YAML is data: commands in its strings are documentation.
        let strict = f.ends_with(".sh");
        out.push(Source { file: f, text: join_continuations(&code), strict });
    }
    let readme = read("README.md");
    for s in DEPLOY_SECTIONS {
        markdown_sources(&format!("README.md ({s})"), &join_continuations(&readme_section(&readme, s)), &mut out);
    }
    out
}

/// The words after each invocation of `program` in `text`, up to the end of that command
/// (an unquoted `)`, `;`, `|`, `&`, `<`, `>`, backquote, newline, or a `#` comment).
fn invocations(text: &str, program: &str) -> Vec<Vec<String>> {
    located_invocations(text, program).into_iter().map(|(_, w)| w).collect()
}

/// Like [`invocations`], with whether each stands where a shell command starts (line start,
/// after `$ `, `$(`, `(`, `|`, `;`, `&&`, a backquote, or `NAME=value` assignments) — as
/// opposed to a mention inside a string or a sentence.
fn located_invocations(text: &str, program: &str) -> Vec<(bool, Vec<String>)> {
    let text = &join_continuations(text);
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = text[start..].find(program) {
        let at = start + i;
        start = at + program.len();
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || "_-.$".contains(c)) {
            continue;
        }
        if !text[start..].starts_with(' ') {
            continue;
        }
        let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let prefix = text[line_start..at].trim();
        let prefix = prefix.strip_prefix("$ ").unwrap_or(prefix);
        if prefix.split_whitespace().last().is_some_and(|w| w.starts_with('-')) {
            continue; // the value of a flag (`--bin orchestrator`), not an invocation
        }
        let at_command = prefix.is_empty()
            || ["$(", "(", "|", ";", "&&", "`", "then", "do", "else"].iter().any(|e| prefix.ends_with(e))
            || prefix.split_whitespace().all(|w| w.contains('=') && !w.starts_with('-'));
        out.push((at_command, words(&text[start..])));
    }
    out
}

/// The lines of a script or YAML file that are not comments.
fn code_lines(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n")
}

fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut quote: Option<char> = None;
    let mut depth = 0; // inside `$( … )` within a word
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if depth == 0 && c == '$' && chars.peek() == Some(&'(') && quote != Some('\'') {
            cur.push_str("$(");
            chars.next();
            depth = 1;
            has = true;
            continue;
        }
        if depth > 0 {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            cur.push(c);
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    has = true;
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                        has = true;
                    }
                }
                ' ' | '\t' => {
                    if has {
                        out.push(std::mem::take(&mut cur));
                        has = false;
                    }
                }
                '#' if !has => break,
                ')' | ';' | '|' | '&' | '<' | '>' | '`' | '\n' => break,
                _ => {
                    cur.push(c);
                    has = true;
                }
            },
        }
        if quote.is_none() && c == '\n' {
            break;
        }
    }
    if has {
        out.push(cur);
    }
    out
}

/// Checks one invocation of our `bin` against its help; `None` when it is fine or is prose.
fn check_our_invocation(cmds: &[Cmd], bin: &str, words: &[String], strict: bool) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    let mut cmd = find_cmd(cmds, bin, &path)?;
    let mut i = 0;
    while i < words.len() && cmd.subcommands.contains(&words[i]) {
        path.push(words[i].clone());
        cmd = find_cmd(cmds, bin, &path).expect("listed subcommand");
        i += 1;
    }
    if path.is_empty() && !words.first().is_some_and(|w| w.starts_with("--")) {
        return (strict && !cmd.subcommands.is_empty())
            .then(|| format!("`{bin} {}`: no such subcommand (has: {})", words.join(" "), cmd.subcommands.join(", ")));
    }
    let bad: Vec<String> = words[i..]
        .iter()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| f.split('=').next().unwrap_or("").trim_end_matches([',', '.', ':']).to_string())
        .filter(|f| !f.is_empty() && !cmd.accepts(f))
        .collect();
    (!bad.is_empty())
        .then(|| format!("`{} {}`: {} accepts no --{}", bin, words.join(" "), cmd.name(), bad.join(", --")))
}

/// The gcloud SDK's static command tree (data/cli/gcloud_completions.py), when gcloud is installed.
fn gcloud_sdk() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let gcloud = std::env::split_paths(&path).map(|d| d.join("gcloud")).find(|p| p.is_file())?;
    let real = std::fs::canonicalize(gcloud).ok()?;
    Some(real.parent()?.parent()?.to_path_buf())
}

fn gcloud_tree() -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(gcloud_sdk()?.join("data/cli/gcloud_completions.py")).ok()?;
    serde_json::from_str(&text[text.find('{')?..]).ok()
}

fn check_gcloud(tree: &serde_json::Value, words: &[String], strict: bool) -> Option<String> {
    let has_flag = |node: &serde_json::Value, f: &str| {
        let f = format!("--{f}");
        node["flags"].get(&f).is_some() || tree["flags"].get(&f).is_some()
    };
    let mut node = tree;
    let mut path: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if w.starts_with("--") && path.is_empty() {
            i += 1;
            continue;
        }
        match node["commands"].get(w) {
            Some(n) => {
                node = n;
                path.push(w);
                i += 1;
            }
            None => break,
        }
    }
    let line = format!("gcloud {}", words.join(" "));
    if path.is_empty() {
        return strict.then(|| format!("`{line}`: unknown gcloud command"));
    }
    if node["commands"].as_object().is_some_and(|m| !m.is_empty()) {
        return strict.then(|| format!("`{line}`: `gcloud {}` is a command group, not a command", path.join(" ")));
    }
    let bad: Vec<String> = words[i..]
        .iter()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| f.split('=').next().unwrap_or("").to_string())
        .filter(|f| !f.is_empty())
        .filter(|f| !has_flag(node, f) && !f.strip_prefix("no-").is_some_and(|g| has_flag(node, g)))
        .collect();
    (!bad.is_empty()).then(|| format!("`{line}`: `gcloud {}` has no --{}", path.join(" "), bad.join(", --")))
}

// ---------------------------------------------------------------------------------------------
// Cloud Build

fn cloudbuild() -> Value {
    yaml("cloudbuild-job.yaml")
}

/// `$NAME` → `${NAME}`.
fn braces(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_uppercase() || *n == '_') {
            let mut name = String::new();
            while let Some(n) = chars.peek().copied().filter(|n| n.is_ascii_alphanumeric() || *n == '_') {
                name.push(n);
                chars.next();
            }
            out.push_str(&format!("${{{name}}}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Cloud Build's spelling → deploy/'s: `$NAME` → `${NAME}`, user substitutions `${_NAME}` → `${NAME}`.
fn normalize_subst(s: &str) -> String {
    braces(s).replace("${_", "${")
}

fn deploy_step_args() -> Vec<String> {
    let cb = cloudbuild();
    let step = seq(&cb["steps"])
        .into_iter()
        .find(|s| {
            let a = strings(&s["args"]);
            s["entrypoint"] == "gcloud" && a.len() > 3 && a[..3] == ["run", "jobs", "deploy"]
        })
        .expect("cloudbuild-job.yaml has a step `gcloud run jobs deploy …`");
    strings(&step["args"])
}

fn flag_values(args: &[String]) -> BTreeMap<String, String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect()
}

/// `1800s`, `30m`, `1h` or `1800` in seconds.
fn seconds(s: &str) -> u64 {
    let (n, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    n.parse::<u64>().unwrap_or_else(|_| panic!("{s:?} is not a duration")) * mult
}

// =============================================================================================
// The tests

#[test]
fn every_yaml_file_parses() {
    for f in yaml_files() {
        let text = read(&f);
        let mut docs = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{f} is not valid YAML: {e}"));
            assert!(!v.is_null(), "{f}: an empty YAML document");
            docs += 1;
        }
        assert!(docs > 0, "{f} holds no YAML document");
        // Rendered with sample values it still parses (placeholders never break the syntax).
        let rendered = render_sample(&text);
        for doc in serde_yaml_ng::Deserializer::from_str(&rendered) {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{f} rendered with sample values is not valid YAML: {e}"));
        }
    }
}

#[test]
fn templates_render_with_render_sh() {
    for f in deploy_files() {
        let text = read(&f);
        let names = placeholders(&text);
        if names.is_empty() || f.ends_with(".sh") || f.ends_with(".md") || f.ends_with("Dockerfile") {
            continue;
        }
        let run = |skip: Option<&str>| {
            let mut c = Command::new("bash");
            c.arg(root().join("deploy/render.sh")).arg(root().join(&f)).env_clear();
            if let Some(path) = std::env::var_os("PATH") {
                c.env("PATH", path);
            }
            for n in names.iter().filter(|n| Some(n.as_str()) != skip) {
                c.env(n, sample_value(n));
            }
            c.output().expect("run deploy/render.sh")
        };
        let out = run(None);
        assert!(out.status.success(), "render.sh {f}: {}", String::from_utf8_lossy(&out.stderr));
        let rendered = String::from_utf8(out.stdout).unwrap();
        assert!(placeholders(&rendered).is_empty(), "render.sh left placeholders in {f}:\n{rendered}");
        assert_eq!(rendered.trim_end(), render_sample(&text).trim_end(), "render.sh {f} renders differently");
        if f.ends_with(".yaml") {
            serde_yaml_ng::from_str::<Value>(&rendered).unwrap_or_else(|e| panic!("rendered {f} is not YAML: {e}"));
        }
        let missing = names.iter().next().unwrap();
        let out = run(Some(missing));
        assert_eq!(out.status.code(), Some(1), "render.sh {f} without {missing} must fail");
        assert!(String::from_utf8_lossy(&out.stderr).contains(missing.as_str()), "the error names {missing}");
    }
}

#[test]
fn every_setting_of_the_binaries_is_documented() {
    let docs = documentation();
    let cmds = all_commands();
    let mut missing = BTreeMap::<String, Vec<String>>::new();
    for c in &cmds {
        for env in c.envs.keys() {
            if !has_token(&docs, env) {
                missing.entry(c.name()).or_default().push(env.clone());
            }
        }
        for o in &c.opts {
            let flag = format!("--{}", o.flag);
            // A flag with an env var is the same setting: documenting either one will do.
            let env_documented = o.env.as_ref().is_some_and(|e| has_token(&docs, e));
            if o.flag != "help" && o.flag != "version" && !has_token(&docs, &flag) && !env_documented {
                missing.entry(c.name()).or_default().push(flag);
            }
        }
    }
    for (name, _) in READ_OUTSIDE_CLAP {
        if !has_token(&docs, name) {
            missing.entry("(read outside clap)".into()).or_default().push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "settings the binaries accept but neither README.md nor deploy/ mention (a flag counts as documented when its env var is):\n{}",
        missing.iter().map(|(k, v)| format!("  {k}: {}", v.join(", "))).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn env_vars_read_outside_clap_are_listed_with_a_reason() {
    let cmds = all_commands();
    let via_clap: BTreeSet<String> = cmds.iter().flat_map(|c| c.envs.keys().cloned()).collect();
    let reads = env_reads_in_sources();
    let unlisted: Vec<String> = reads
        .iter()
        .filter(|(n, _)| {
            !via_clap.contains(*n)
                && !listed(SET_BY_CLOUD_RUN, n)
                && !listed(READ_OUTSIDE_CLAP, n)
                && !listed(PROCESS_CONVENTIONS, n)
        })
        .map(|(n, f)| format!("{n} (read in {f})"))
        .collect();
    assert!(
        unlisted.is_empty(),
        "env vars read with std::env that no --help lists: add each to READ_OUTSIDE_CLAP in tests/it/deploy.rs with a reason, and document it: {}",
        unlisted.join(", ")
    );
    let stale: Vec<&str> = READ_OUTSIDE_CLAP.iter().map(|(n, _)| *n).filter(|n| !reads.contains_key(*n)).collect();
    assert!(stale.is_empty(), "READ_OUTSIDE_CLAP lists env vars no source reads any more: {stale:?}");
}

#[test]
fn templates_set_only_env_vars_their_binary_reads() {
    let cmds = all_commands();
    let containers = cloud_run_containers();
    let outside = |n: &str| listed(READ_OUTSIDE_CLAP, n);
    let mut problems = Vec::new();
    let mut check = |place: &str, bin: &str, name: &str, plain_value: bool| {
        let known = clap_envs(&cmds, bin);
        if let Some((_, why)) = SET_BY_CLOUD_RUN.iter().find(|(n, _)| *n == name) {
            problems.push(format!("{place}: sets {name}, which Cloud Run sets itself ({why})"));
        } else if listed(PROCESS_CONVENTIONS, name) {
            problems.push(format!("{place}: sets {name}, a process convention, not a setting"));
        } else if !known.contains_key(name) && !outside(name) {
            problems.push(format!(
                "{place}: sets {name}, which `{bin}` does not read (its env vars: {})",
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        } else if plain_value && known.get(name) == Some(&true) {
            problems.push(format!("{place}: sets the secret {name} in plain text; use Secret Manager"));
        }
    };
    // Cloud Run specs: per container, the binary it runs.
    for c in &containers {
        for e in &c.env {
            check(&format!("{} ({})", c.file, c.resource), &c.bin, &e.name, e.secret.is_none());
        }
    }
    // The orchestrator's env template.
    let tmpl = yaml("deploy/orchestrator-env.yaml");
    for (k, _) in tmpl.as_mapping().expect("deploy/orchestrator-env.yaml is a mapping") {
        check("deploy/orchestrator-env.yaml", "orchestrator", k.as_str().expect("string keys"), true);
    }
    // Cloud Build and the scripts: env set on a resource, by the binary that resource runs.
    let bins = resource_bins(&containers);
    let mut invocations_with_env: Vec<(String, Vec<String>)> = vec![("cloudbuild-job.yaml".into(), deploy_step_args())];
    for s in sources().into_iter().filter(|s| s.strict) {
        for w in invocations(&s.text, "gcloud") {
            invocations_with_env.push((s.file.clone(), w));
        }
    }
    for (file, args) in invocations_with_env {
        let resource = args.iter().find(|a| bins.contains_key(*a));
        for a in &args {
            for (flag, secret) in [
                ("--set-env-vars=", false),
                ("--update-env-vars=", false),
                ("--set-secrets=", true),
                ("--update-secrets=", true),
            ] {
                let Some(v) = a.strip_prefix(flag) else {
                    continue;
                };
                let resource =
                    resource.unwrap_or_else(|| panic!("{file}: `{a}` on a resource no spec in deploy/ describes"));
                for (k, _) in gcloud_pairs(v).into_iter().filter(|(k, _)| !k.starts_with('/')) {
                    check(&format!("{file} ({resource})"), &bins[resource], &k, !secret);
                }
            }
        }
    }
    // The image's ENV: every binary runs with it.
    let stages = dockerfile();
    if let Some(stage) = stages.last() {
        for (i, args) in &stage.instructions {
            if i == "ENV" {
                let name = args.split(['=', ' ']).next().unwrap_or("");
                for bin in BINARIES {
                    check("deploy/Dockerfile", bin, name, true);
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn orchestrator_env_template_lists_every_setting_and_matches_the_specs() {
    let cmds = all_commands();
    let text = read("deploy/orchestrator-env.yaml");
    let keys_mentioned: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let t = l.trim_start().trim_start_matches('#').trim_start();
            let (k, _) = t.split_once(':')?;
            (!k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .then(|| k.to_string())
        })
        .collect();
    let envs = clap_envs(&cmds, "orchestrator");
    let missing: Vec<&String> =
        envs.keys().filter(|n| !keys_mentioned.contains(*n) && !listed(SET_BY_CLOUD_RUN, n)).collect();
    assert!(
        missing.is_empty(),
        "deploy/orchestrator-env.yaml lacks (as a key, set or commented) these orchestrator env vars: {missing:?}"
    );

    let tmpl = yaml("deploy/orchestrator-env.yaml");
    let set: BTreeMap<String, String> = tmpl
        .as_mapping()
        .expect("a mapping")
        .iter()
        .map(|(k, v)| {
            let k = k.as_str().expect("string keys").to_string();
            let v = v.as_str().unwrap_or_else(|| {
                panic!("orchestrator-env.yaml: {k} must be a quoted string (gcloud --env-vars-file)")
            });
            (k, v.to_string())
        })
        .collect();
    // The specs that run the orchestrator set the same values.
    for c in cloud_run_containers().iter().filter(|c| c.bin == "orchestrator") {
        for e in &c.env {
            if let Some(v) = &e.value {
                assert_eq!(
                    set.get(&e.name),
                    Some(v),
                    "{}: {}={v:?} differs from deploy/orchestrator-env.yaml",
                    c.file,
                    e.name
                );
            }
        }
        // And every setting the template sets is set in the spec, unless it belongs to a
        // subcommand the spec does not run (`serve`-only settings in the cron job).
        let sub = c.args.first().cloned().unwrap_or_default();
        let sub_cmd = find_cmd(&cmds, "orchestrator", std::slice::from_ref(&sub));
        for (k, v) in &set {
            let applies = sub_cmd.is_none_or(|s| s.envs.contains_key(k)) || listed(READ_OUTSIDE_CLAP, k);
            if applies {
                assert!(
                    c.env.iter().any(|e| &e.name == k),
                    "{}: `orchestrator {sub}` reads {k} (set to {v:?} in deploy/orchestrator-env.yaml) but the spec does not set it",
                    c.file
                );
            }
        }
    }
}

#[test]
fn commands_in_the_deployment_name_real_subcommands_and_flags() {
    let cmds = all_commands();
    let mut problems = Vec::new();
    for s in sources() {
        for bin in ["jobctl", "orchestrator"] {
            for (at_command, w) in located_invocations(&s.text, bin) {
                if let Some(p) = check_our_invocation(&cmds, bin, &w, s.strict && at_command) {
                    problems.push(format!("{}: {p}", s.file));
                }
            }
        }
    }
    // What the Cloud Run specs run: the subcommand and the flags of each container.
    for c in cloud_run_containers() {
        let bin_cmd = find_cmd(&cmds, &c.bin, &[])
            .unwrap_or_else(|| panic!("{}: runs {}, not a workspace binary", c.file, c.bin));
        let mut path = Vec::new();
        for a in c.args.iter().take_while(|a| !a.starts_with('-')) {
            let parent = find_cmd(&cmds, &c.bin, &path).expect("parent");
            if !parent.subcommands.contains(a) {
                problems.push(format!("{}: `{} {}`: no such subcommand", c.file, c.bin, c.args.join(" ")));
                break;
            }
            path.push(a.clone());
        }
        if !bin_cmd.subcommands.is_empty() && path.is_empty() {
            problems.push(format!("{}: `{}` needs a subcommand ({})", c.file, c.bin, bin_cmd.subcommands.join(", ")));
        }
        if let Some(cmd) = find_cmd(&cmds, &c.bin, &path) {
            for f in c.args.iter().filter_map(|a| a.strip_prefix("--")) {
                let f = f.split('=').next().unwrap_or("");
                if !cmd.accepts(f) {
                    problems.push(format!("{}: {} accepts no --{f}", c.file, cmd.name()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn gcloud_commands_exist_with_these_flags() {
    let Some(tree) = gcloud_tree() else {
        eprintln!("SKIPPED: the gcloud SDK (its data/cli/gcloud_completions.py command tree) is not installed");
        return;
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    for s in sources() {
        for (at_command, w) in located_invocations(&s.text, "gcloud") {
            checked += 1;
            if let Some(p) = check_gcloud(&tree, &w, s.strict && at_command) {
                problems.push(format!("{}: {p}", s.file));
            }
        }
    }
    for step in seq(&cloudbuild()["steps"]) {
        let args = strings(&step["args"]);
        if step["entrypoint"] == "gcloud" {
            checked += 1;
            if let Some(p) = check_gcloud(&tree, &args, true) {
                problems.push(format!("cloudbuild-job.yaml: {p}"));
            }
        } else if step["entrypoint"] == "bash" {
            for script in args.iter().skip_while(|a| *a != "-c").skip(1) {
                for w in invocations(script, "gcloud") {
                    checked += 1;
                    if let Some(p) = check_gcloud(&tree, &w, true) {
                        problems.push(format!("cloudbuild-job.yaml: {p}"));
                    }
                }
            }
        }
    }
    assert!(checked > 20, "found only {checked} gcloud commands: is the scanner broken?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_image_ships_the_workspace_binaries_as_non_root() {
    let stages = dockerfile();
    let names: BTreeSet<String> = stages.iter().filter_map(|s| s.name.clone()).collect();
    let shippable = shippable_bins();
    assert!(shippable.contains(JOB_BIN), "the workspace builds no `{JOB_BIN}` binary: {shippable:?}");
    let last = stages.last().expect("a final stage");

    let mut shipped = BTreeSet::new();
    for (i, args) in &last.instructions {
        if i == "COPY" {
            let words: Vec<&str> = args.split_whitespace().collect();
            if let Some(from) = words.iter().find_map(|w| w.strip_prefix("--from=")) {
                assert!(names.contains(from), "COPY --from={from}: no stage of that name");
            }
            let dest = words.last().expect("COPY destination");
            if dest.starts_with("/usr/local/bin/") {
                shipped.insert(basename(dest));
            }
        }
    }
    assert_eq!(
        shipped, shippable,
        "the runtime image must carry exactly the workspace's non-test binaries in /usr/local/bin"
    );

    let entry = last.instructions.iter().rev().find(|(i, _)| i == "ENTRYPOINT").expect("an ENTRYPOINT");
    let entry = exec_form(&entry.1);
    assert!(entry[0].starts_with('/'), "ENTRYPOINT should be the exec form with an absolute path: {entry:?}");
    assert_eq!(basename(&entry[0]), JOB_BIN, "the image's ENTRYPOINT is the job (what a Cloud Run Job task runs)");
    for (i, args) in &last.instructions {
        if i == "CMD" {
            let cmd = exec_form(args);
            assert!(
                !cmd.first().is_some_and(|c| c.starts_with('/') && !shipped.contains(&basename(c))),
                "CMD names {cmd:?}"
            );
        }
    }

    let user = last
        .instructions
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.split(':').next().unwrap_or("").to_string());
    match user {
        Some(u) => {
            assert!(!u.is_empty() && u != "root" && u != "0", "the runtime image runs as {u:?}: must be non-root")
        }
        None => assert!(
            last.from.ends_with(":nonroot"),
            "no USER in the final stage and base image {} is not :nonroot",
            last.from
        ),
    }

    // Every binary cargo builds in the image is one the workspace has, and all shipped ones are built.
    let mut built = BTreeSet::new();
    for s in &stages {
        for (i, args) in &s.instructions {
            if i == "RUN" && args.contains("cargo build") {
                let w: Vec<&str> = args.split_whitespace().collect();
                for pair in w.windows(2) {
                    if pair[0] == "--bin" {
                        built.insert(pair[1].trim_end_matches([';', '&', '\\']).to_string());
                    }
                }
            }
        }
    }
    assert!(
        built.is_subset(&shippable),
        "cargo builds unknown binaries: {:?}",
        built.difference(&shippable).collect::<Vec<_>>()
    );
    assert!(shipped.is_subset(&built), "shipped but never built: {:?}", shipped.difference(&built).collect::<Vec<_>>());

    // The build context keeps what cargo needs.
    let ignore: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    for m in workspace_members() {
        needed.push(format!("{m}/Cargo.toml"));
        if m != TEST_MEMBER {
            needed.extend(files_under(&m).into_iter().filter(|f| f.ends_with(".rs") || f.ends_with(".sql")));
        }
    }
    let dropped: Vec<&String> = needed.iter().filter(|f| dockerignored(&ignore, f)).collect();
    assert!(dropped.is_empty(), ".dockerignore excludes files the image build needs: {dropped:?}");
    assert!(dockerignored(&ignore, "target/debug/job"), ".dockerignore should exclude target/");
}

#[test]
fn cloudbuild_deploys_the_job_of_job_yaml() {
    let cb = cloudbuild();
    let text = read("cloudbuild-job.yaml");
    // Substitutions: the user-defined ones used are exactly those defined; the others are built in.
    const BUILTIN: [&str; 15] = [
        "PROJECT_ID",
        "BUILD_ID",
        "PROJECT_NUMBER",
        "LOCATION",
        "TRIGGER_NAME",
        "COMMIT_SHA",
        "REVISION_ID",
        "SHORT_SHA",
        "REPO_NAME",
        "REPO_FULL_NAME",
        "BRANCH_NAME",
        "TAG_NAME",
        "REF_NAME",
        "TRIGGER_BUILD_CONFIG_PATH",
        "SERVICE_ACCOUNT_EMAIL",
    ];
    let defined: BTreeSet<String> = cb["substitutions"]
        .as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let used = placeholders(&braces(&code));
    let used_user: BTreeSet<String> = used.iter().filter(|n| n.starts_with('_')).cloned().collect();
    assert_eq!(used_user, defined, "substitutions used vs defined in cloudbuild-job.yaml");
    for n in used.iter().filter(|n| !n.starts_with('_')) {
        assert!(BUILTIN.contains(&n.as_str()), "cloudbuild-job.yaml uses ${{{n}}}, neither built in nor defined");
    }
    // waitFor names earlier steps.
    let mut ids = BTreeSet::new();
    for step in seq(&cb["steps"]) {
        for w in strings(&step["waitFor"]) {
            assert!(w == "-" || ids.contains(&w), "cloudbuild-job.yaml: waitFor {w:?} names no earlier step");
        }
        if let Some(id) = step["id"].as_str() {
            ids.insert(id.to_string());
        }
        for a in strings(&step["args"]) {
            if let Some(f) = a.strip_prefix("--file=") {
                assert!(root().join(f).is_file(), "cloudbuild-job.yaml builds with {f}, which does not exist");
            }
            if let Some(t) = a.strip_prefix("--target=") {
                assert!(
                    dockerfile().iter().any(|s| s.name.as_deref() == Some(t)),
                    "--target={t}: no such Dockerfile stage"
                );
            }
        }
    }

    // The deploy step and deploy/job.yaml describe the same job.
    let args = deploy_step_args();
    let flags = flag_values(&args);
    let job = yaml("deploy/job.yaml");
    let containers = cloud_run_containers();
    let c = container_of(&containers, "deploy/job.yaml");
    assert_eq!(c.bin, JOB_BIN, "deploy/job.yaml runs the job binary");
    let pod = pod_spec(&job);
    let exec = &job["spec"]["template"];
    assert_eq!(args[3], c.resource, "the job cloudbuild-job.yaml deploys is the one of deploy/job.yaml");
    let image = normalize_subst(&flags["image"]);
    assert_eq!(image, normalize_subst(c.container["image"].as_str().expect("image")), "image");
    let pushed: Vec<String> = seq(&cb["steps"])
        .iter()
        .filter(|s| strings(&s["args"]).first().map(String::as_str) == Some("push"))
        .flat_map(|s| strings(&s["args"]).into_iter().skip(1))
        .map(|i| normalize_subst(&i))
        .collect();
    assert!(pushed.contains(&image), "cloudbuild-job.yaml deploys {image} without pushing it (pushes {pushed:?})");
    assert!(strings(&cb["images"]).iter().any(|i| normalize_subst(i) == image), "images: lists the deployed image");
    let tagged = seq(&cb["steps"])
        .iter()
        .flat_map(|s| strings(&s["args"]))
        .any(|a| a.strip_prefix("--tag=").is_some_and(|t| normalize_subst(t) == image));
    assert!(tagged, "no build step tags {image}");

    let same = |what: &str, cb_value: Option<String>, spec_value: Option<String>| {
        assert_eq!(
            cb_value.map(|v| normalize_subst(&v)),
            spec_value.map(|v| normalize_subst(&v)),
            "{what}: cloudbuild-job.yaml vs deploy/job.yaml"
        );
    };
    same("task timeout (s)", flags.get("task-timeout").map(|t| seconds(t).to_string()), scalar(&pod["timeoutSeconds"]));
    same("max retries", flags.get("max-retries").cloned(), scalar(&pod["maxRetries"]));
    same("tasks", flags.get("tasks").cloned(), scalar(&exec["spec"]["taskCount"]));
    same("parallelism", flags.get("parallelism").cloned(), scalar(&exec["spec"]["parallelism"]));
    same("cpu", flags.get("cpu").cloned(), scalar(&c.container["resources"]["limits"]["cpu"]));
    same("memory", flags.get("memory").cloned(), scalar(&c.container["resources"]["limits"]["memory"]));
    same("service account", flags.get("service-account").cloned(), scalar(&pod["serviceAccountName"]));
    same(
        "Cloud SQL instances",
        flags.get("set-cloudsql-instances").cloned(),
        scalar(&exec["metadata"]["annotations"]["run.googleapis.com/cloudsql-instances"]),
    );
    let cb_env: BTreeMap<String, String> = flags
        .get("set-env-vars")
        .map(|v| gcloud_pairs(v))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, normalize_subst(&v)))
        .collect();
    let spec_env: BTreeMap<String, String> =
        c.env.iter().filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), normalize_subst(v)))).collect();
    assert_eq!(cb_env, spec_env, "plain env vars: cloudbuild-job.yaml vs deploy/job.yaml");
    let cb_secrets: BTreeMap<String, String> =
        flags.get("set-secrets").map(|v| gcloud_pairs(v)).unwrap_or_default().into_iter().collect();
    let spec_secrets: BTreeMap<String, String> =
        c.env.iter().filter_map(|e| e.secret.as_ref().map(|(s, k)| (e.name.clone(), format!("{s}:{k}")))).collect();
    assert_eq!(cb_secrets, spec_secrets, "secrets: cloudbuild-job.yaml vs deploy/job.yaml");
    if let Some(labels) = flags.get("labels") {
        for (k, v) in gcloud_pairs(labels) {
            assert_eq!(scalar(&job["metadata"]["labels"][k.as_str()]), Some(v), "label {k}");
        }
    }
    assert_eq!(
        flags.get("region").map(|r| normalize_subst(r)),
        scalar(&job["metadata"]["labels"]["cloud.googleapis.com/location"]),
        "region"
    );
}

#[test]
fn the_scheduler_sends_the_audience_and_email_serve_verifies() {
    let cmds = all_commands();
    let serve = find_cmd(&cmds, "orchestrator", &["serve".to_string()])
        .expect("`orchestrator serve` exists (see `orchestrator --help`)");
    let setting = |needle: &str| {
        let opts: Vec<&Opt> = serve.opts.iter().filter(|o| o.flag.contains(needle)).collect();
        assert_eq!(opts.len(), 1, "`orchestrator serve` should have one --*{needle}* setting, has {opts:?}");
        opts[0].clone()
    };
    let audience = setting("audience");
    let email = setting("email");

    let containers = cloud_run_containers();
    let svc: Vec<&Container> = containers
        .iter()
        .filter(|c| {
            c.kind == "Service" && c.bin == "orchestrator" && c.args.first().map(String::as_str) == Some("serve")
        })
        .collect();
    assert_eq!(svc.len(), 1, "one Cloud Run service spec runs `orchestrator serve`");
    let svc = svc[0];
    // The value the service is configured with, from its env or its args.
    let value_of = |o: &Opt| -> String {
        let from_env = o.env.as_ref().and_then(|n| svc.env.iter().find(|e| &e.name == n)).and_then(|e| e.value.clone());
        let from_args = flag_values(&svc.args).get(&o.flag).cloned();
        from_args.or(from_env).unwrap_or_else(|| panic!("{} does not set --{} ({:?})", svc.file, o.flag, o.env))
    };
    let aud = value_of(&audience);
    let emails: Vec<String> = value_of(&email).split(',').map(|s| s.trim().to_string()).collect();

    let script = code_lines(&read("deploy/scheduler.sh"));
    let calls: Vec<Vec<String>> = invocations(&script, "gcloud")
        .into_iter()
        .filter(|w| {
            w.len() > 3
                && w[..2] == ["scheduler", "jobs"]
                && w[3] == "http"
                && w.iter().any(|a| a.starts_with("--oidc-"))
        })
        .collect();
    assert!(calls.len() >= 2, "deploy/scheduler.sh creates and updates an HTTP job with an OIDC token");
    let route = serve
        .help
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "POST" && w[1].starts_with('/'))
        .map(|w| w[1].trim_end_matches([',', '.', ')']).to_string());
    for call in &calls {
        let f = flag_values(call);
        assert_eq!(
            f.get("oidc-token-audience"),
            Some(&aud),
            "deploy/scheduler.sh --oidc-token-audience vs {} --{}",
            svc.file,
            audience.flag
        );
        let sa = f.get("oidc-service-account-email").expect("--oidc-service-account-email");
        assert!(emails.contains(sa), "the scheduler signs as {sa}, which {} does not allow ({emails:?})", svc.file);
        assert_eq!(f.get("http-method").map(String::as_str), Some("POST"));
        if let Some(route) = &route {
            assert!(
                f.get("uri").is_some_and(|u| u.ends_with(route.as_str())),
                "the scheduler should call {route} (from `orchestrator serve --help`): {:?}",
                f.get("uri")
            );
        }
    }
    // The cron variant starts the Cloud Run Job that runs `orchestrator run`.
    let cron_job = containers
        .iter()
        .find(|c| c.kind == "Job" && c.bin == "orchestrator")
        .map(|c| c.resource.clone())
        .expect("a Cloud Run Job spec runs the orchestrator (the cron variant)");
    let cron_calls: Vec<BTreeMap<String, String>> = invocations(&script, "gcloud")
        .iter()
        .map(|w| flag_values(w))
        .filter(|f| f.contains_key("oauth-service-account-email"))
        .collect();
    assert!(!cron_calls.is_empty(), "deploy/scheduler.sh has a cron variant (OAuth to the Admin API)");
    for f in cron_calls {
        let uri = f.get("uri").expect("--uri");
        let uri = if uri == "$uri" {
            script
                .lines()
                .find_map(|l| l.trim().strip_prefix("local uri=\""))
                .expect("local uri=\"…\"")
                .trim_end_matches('"')
                .to_string()
        } else {
            uri.clone()
        };
        assert!(
            uri.ends_with(&format!("/jobs/{cron_job}:run")),
            "the cron variant should start the job {cron_job}: {uri}"
        );
    }

    // Cloud Run's own IAM check accepts that audience.
    let custom: Vec<String> = svc.doc["metadata"]["annotations"]["run.googleapis.com/custom-audiences"]
        .as_str()
        .map(|s| serde_json::from_str(s).expect("custom-audiences is a JSON list"))
        .unwrap_or_default();
    assert!(custom.contains(&aud), "{}: run.googleapis.com/custom-audiences should contain {aud}", svc.file);

    // OIDC-only ingress: internal, and never a public invoker.
    assert_eq!(
        svc.doc["metadata"]["annotations"]["run.googleapis.com/ingress"].as_str(),
        Some("internal"),
        "{} ingress",
        svc.file
    );
    for s in sources().iter().filter(|s| s.strict) {
        for bad in ["--allow-unauthenticated", "allUsers", "--insecure-no-auth"] {
            assert!(!s.text.contains(bad), "{} uses {bad}", s.file);
        }
    }

    // Deadlines: serve answers before the scheduler gives up, which is within the request timeout.
    let deadline = script
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("ATTEMPT_DEADLINE=\"${ATTEMPT_DEADLINE:-").and_then(|r| r.strip_suffix("}\""))
        })
        .map(seconds)
        .expect("deploy/scheduler.sh sets ATTEMPT_DEADLINE=\"${ATTEMPT_DEADLINE:-…}\"");
    assert!(
        (15..=1800).contains(&deadline),
        "Cloud Scheduler HTTP attempt deadlines are 15 s to 30 min, not {deadline} s"
    );
    let timeout = pod_spec(&svc.doc)["timeoutSeconds"].as_u64().expect("the service sets timeoutSeconds");
    assert!(
        timeout >= deadline,
        "the service's request timeout ({timeout} s) is shorter than the attempt deadline ({deadline} s)"
    );
    if let Some(within) = serve.opts.iter().find(|o| o.flag.contains("respond")) {
        let v = value_of(within);
        assert!(seconds(&v) < deadline, "--{} ({v}) must be below the attempt deadline ({deadline} s)", within.flag);
    }
}

#[test]
fn metrics_match_the_job_final_log_lines() {
    use sheettobigquery::telemetry::{JOB_FAILED, JOB_SUCCEEDED};
    let apply = code_lines(&read("deploy/monitoring/apply.sh"));
    let job_name = yaml("deploy/job.yaml")["metadata"]["name"].as_str().expect("job name").to_string();
    let mut metrics = BTreeMap::new();
    for w in invocations(&apply, "upsert_metric") {
        if w.len() == 2 {
            let file = w[1].replace("$here/", "deploy/monitoring/");
            metrics.insert(w[0].clone(), file);
        }
    }
    let mut messages = BTreeSet::new();
    for file in metrics.values() {
        let m = yaml(file);
        let filter = m["filter"].as_str().unwrap_or_else(|| panic!("{file}: filter"));
        assert!(
            filter.contains(&format!("resource.labels.job_name=\"{job_name}\"")),
            "{file} should select the job {job_name}"
        );
        for msg in [JOB_SUCCEEDED, JOB_FAILED] {
            if filter.contains(&format!("jsonPayload.message=\"{msg}\"")) {
                messages.insert(msg);
            }
        }
        for (label, extractor) in m["labelExtractors"].as_mapping().into_iter().flatten() {
            let label = label.as_str().unwrap();
            assert!(
                seq(&m["metricDescriptor"]["labels"]).iter().any(|l| l["key"] == label),
                "{file}: label {label} extracted but not declared"
            );
            assert!(
                extractor.as_str().is_some_and(|e| e.starts_with("EXTRACT(jsonPayload.")),
                "{file}: {label} extractor"
            );
        }
    }
    assert_eq!(messages.len(), 2, "log-based metrics for both `{JOB_SUCCEEDED}` and `{JOB_FAILED}` ({metrics:?})");

    // Alert policies refer to those metrics.
    for f in deploy_files().into_iter().filter(|f| f.contains("/monitoring/alert-")) {
        let text = read(&f);
        let refs: Vec<&String> =
            metrics.keys().filter(|m| text.contains(&format!("logging.googleapis.com/user/{m}\""))).collect();
        assert!(!refs.is_empty(), "{f} refers to none of the metrics apply.sh creates ({:?})", metrics.keys());
        assert!(apply.contains(f.trim_start_matches("deploy/monitoring/")), "apply.sh does not apply {f}");
    }

    // A real failed run ends with the line the failure metric matches, with the extracted fields.
    let out = Command::new(testkit::proc::bin(JOB_BIN))
        .args(["--config-json", "{}"])
        .env("LOG_FORMAT", "json")
        .env_remove("DATABASE_URL")
        .env_remove("JOB_CONFIG_ID")
        .env_remove("JOB_RUN_ID")
        .output()
        .expect("run job");
    assert_eq!(out.status.code(), Some(2), "a bad config exits 2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value =
        stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).expect("a JSON log line");
    assert_eq!(last["message"], JOB_FAILED);
    let failed = yaml(metrics.values().find(|f| read(f).contains(JOB_FAILED)).expect("failure metric"));
    for (label, extractor) in failed["labelExtractors"].as_mapping().into_iter().flatten() {
        let field = extractor.as_str().unwrap().trim_start_matches("EXTRACT(jsonPayload.").trim_end_matches(')');
        if label.as_str() != Some("config") {
            assert!(last.get(field).is_some(), "the final line has no {field} for label {label:?}: {last}");
        }
    }
}

#[test]
fn iam_covers_what_the_specs_use_with_narrow_roles() {
    use sheettobigquery::google::auth::SHEETS_SCOPE;
    let iam_text = read("deploy/iam.sh");
    let iam = code_lines(&iam_text);
    assert!(
        iam_text.contains(SHEETS_SCOPE),
        "deploy/iam.sh should say the job reads Sheets with {SHEETS_SCOPE} (no IAM role)"
    );
    for broad in [
        "roles/owner",
        "roles/editor",
        "roles/run.admin",
        "roles/bigquery.admin",
        "roles/iam.serviceAccountTokenCreator",
    ] {
        assert!(!iam.contains(broad), "deploy/iam.sh grants {broad}");
    }
    let created: BTreeSet<String> =
        invocations(&iam, "ensure_sa").into_iter().filter_map(|w| w.first().cloned()).collect();
    let granted_secrets: BTreeSet<String> =
        invocations(&iam, "secret_access").into_iter().filter_map(|w| w.first().cloned()).collect();

    // Service accounts named anywhere in the deployment are created.
    let mut texts: Vec<(String, String)> = deploy_files().into_iter().map(|f| (f.clone(), read(&f))).collect();
    texts.push(("cloudbuild-job.yaml".into(), read("cloudbuild-job.yaml")));
    for (f, t) in &texts {
        for (i, _) in t.match_indices("@${PROJECT_ID}.iam.gserviceaccount.com") {
            let name: String = t[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            if name.len() < 2 || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                continue; // a shell parameter such as "$1@…"
            }
            assert!(
                created.contains(&name),
                "{f} uses the service account {name}, which deploy/iam.sh does not create ({created:?})"
            );
        }
    }
    // Secrets the specs and Cloud Build read are granted.
    let mut used_secrets = BTreeSet::new();
    for c in cloud_run_containers() {
        used_secrets.extend(c.env.iter().filter_map(|e| e.secret.as_ref().map(|s| s.0.clone())));
    }
    if let Some(v) = flag_values(&deploy_step_args()).get("set-secrets") {
        used_secrets.extend(gcloud_pairs(v).into_iter().map(|(_, s)| s.split(':').next().unwrap_or("").to_string()));
    }
    let ungranted: Vec<&String> = used_secrets.difference(&granted_secrets).collect();
    assert!(ungranted.is_empty(), "secrets used but not granted in deploy/iam.sh: {ungranted:?}");

    // The custom roles exist, and the orchestrator's can run the job with overrides.
    let mut perms = BTreeMap::new();
    for w in invocations(&iam, "ensure_role") {
        let file = w[1].replace("$here/", "deploy/");
        let role = yaml(&file);
        perms.insert(w[0].clone(), strings(&role["includedPermissions"]));
    }
    let all: BTreeSet<&String> = perms.values().flatten().collect();
    // What the Cloud Run executor calls: jobs:run, then the execution (it never reads the operation).
    for p in ["run.jobs.runWithOverrides", "run.executions.get", "run.executions.list", "run.executions.cancel"] {
        assert!(all.iter().any(|x| x.as_str() == p), "no custom role of deploy/iam.sh has {p}");
    }
    let runner =
        perms.iter().find(|(_, p)| p.iter().any(|x| x == "run.jobs.runWithOverrides")).map(|(r, _)| r.clone()).unwrap();
    let job_name = yaml("deploy/job.yaml")["metadata"]["name"].as_str().unwrap().to_string();
    let grants_on_job = invocations(&iam, "gcloud").into_iter().any(|w| {
        w.starts_with(&["run".into(), "jobs".into(), "add-iam-policy-binding".into(), job_name.clone()])
            && w.iter().any(|a| a.ends_with(&format!("/roles/{runner}")))
    });
    assert!(
        grants_on_job,
        "deploy/iam.sh should grant {runner} on the job {job_name} only (gcloud run jobs add-iam-policy-binding)"
    );
    let service = cloud_run_containers()
        .into_iter()
        .find(|c| c.kind == "Service")
        .expect("the orchestrator service spec")
        .resource;
    let invoker = invocations(&iam, "gcloud").into_iter().any(|w| {
        w.starts_with(&["run".into(), "services".into(), "add-iam-policy-binding".into(), service.clone()])
            && w.iter().any(|a| a == "--role=roles/run.invoker")
    });
    assert!(invoker, "deploy/iam.sh should grant roles/run.invoker on {service} (the scheduler's only right)");
}

#[test]
fn shell_scripts_are_valid_and_pass_shellcheck() {
    for s in shell_scripts() {
        let out = Command::new("bash").arg("-n").arg(root().join(&s)).output().expect("bash -n");
        assert!(out.status.success(), "bash -n {s}: {}", String::from_utf8_lossy(&out.stderr));
        let first = read(&s).lines().next().unwrap_or("").to_string();
        assert_eq!(first, "#!/usr/bin/env bash", "{s} starts with a bash shebang");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(root().join(&s)).unwrap().permissions());
        assert!(mode & 0o111 != 0, "{s} is not executable");
    }
    if Command::new("shellcheck").arg("--version").output().is_err() {
        // CI installs it (.ci/run); only a developer's machine may lack it.
        assert!(std::env::var_os("CI").is_none(), "shellcheck is not installed, and CI must run it");
        eprintln!("SKIPPED shellcheck: not installed");
        return;
    }
    let out =
        Command::new("shellcheck").current_dir(root()).arg("-x").args(shell_scripts()).output().expect("shellcheck");
    assert!(out.status.success(), "shellcheck:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Validates the rendered specs against the API schemas that ship with the gcloud SDK, the way
/// `gcloud run … replace`, `gcloud logging metrics create --config-from-file`, `gcloud alpha
/// monitoring policies create --policy-from-file`, `gcloud iam roles create --file` and
/// `gcloud builds submit --config` parse them (unknown fields and bad enum values fail).
const GCLOUD_SCHEMA_CHECK: &str = r#"
import sys
try:
    from googlecloudsdk.core import yaml
    from googlecloudsdk.api_lib.util import apis
    from googlecloudsdk.api_lib.util import messages as mu
    from googlecloudsdk.api_lib.cloudbuild import config as cbconfig
except Exception as e:
    print("unavailable: %s" % e)
    sys.exit(3)
failed = False
for arg in sys.argv[1:]:
    kind, path = arg.split("=", 1)
    try:
        if kind == "cloudbuild":
            cbconfig.LoadCloudbuildConfigFromPath(path, apis.GetMessagesModule("cloudbuild", "v1"))
        else:
            api, version, cls = kind.split(".")
            with open(path) as f:
                mu.DictToMessageWithErrorCheck(yaml.load(f.read()), getattr(apis.GetMessagesModule(api, version), cls))
        print("ok %s as %s" % (path, kind))
    except Exception as e:
        failed = True
        print("FAIL %s as %s: %s: %s" % (path, kind, type(e).__name__, e))
sys.exit(1 if failed else 0)
"#;

#[test]
fn specs_match_the_gcloud_api_schemas() {
    let Some(sdk) = gcloud_sdk() else {
        eprintln!("SKIPPED: the gcloud SDK is not installed");
        return;
    };
    let python = [sdk.join("platform/bundledpythonunix/bin/python3")]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| std::env::var_os("CLOUDSDK_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for f in yaml_files() {
        if f == "deploy/orchestrator-env.yaml" {
            continue; // a plain KEY: "value" map (checked above)
        }
        let doc = yaml(&f);
        let kind = if f == "cloudbuild-job.yaml" {
            "cloudbuild"
        } else if is_cloud_run(&doc) {
            if doc["kind"] == "Job" {
                "run.v1.Job"
            } else {
                "run.v1.Service"
            }
        } else if !doc["metricDescriptor"].is_null() {
            "logging.v2.LogMetric"
        } else if !doc["conditions"].is_null() {
            "monitoring.v3.AlertPolicy"
        } else if !doc["includedPermissions"].is_null() {
            "iam.v1.Role"
        } else {
            panic!("{f}: which API object is this? teach specs_match_the_gcloud_api_schemas");
        };
        let path = dir.path().join(f.replace('/', "__"));
        std::fs::write(&path, render_sample(&read(&f))).unwrap();
        args.push(format!("{kind}={}", path.display()));
    }
    let lib = sdk.join("lib");
    let pythonpath = std::env::join_paths([lib.clone(), lib.join("third_party")]).unwrap();
    let out = Command::new(&python)
        .arg("-c")
        .arg(GCLOUD_SCHEMA_CHECK)
        .args(&args)
        .env("PYTHONPATH", pythonpath)
        .env("CLOUDSDK_CONFIG", dir.path().join("gcloud-config"))
        .output()
        .expect("run the gcloud SDK's python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        eprintln!("SKIPPED: the gcloud SDK's python modules are not importable: {stdout}");
        return;
    }
    assert!(out.status.success(), "schema check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
