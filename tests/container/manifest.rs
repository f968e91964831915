//! `deploy/kubernetes/deployment.yaml`, read: the settings of the greeter container that a
//! run of the image can prove, so the tests run the image as the manifest says.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

const PATH: &str = "deploy/kubernetes/deployment.yaml";

pub struct Deployment {
    pub image: String,
    /// The server's arguments, as the container gets them.
    pub args: Vec<String>,
    /// `containerPort` by port name (`grpc`, `metrics`).
    pub ports: BTreeMap<String, u16>,
    pub run_as_non_root: bool,
    pub run_as_user: u32,
    pub run_as_group: u32,
    pub read_only_root_filesystem: bool,
    pub allow_privilege_escalation: bool,
    pub capabilities_dropped: Vec<String>,
    /// `resources.limits.memory`, in bytes.
    pub memory_limit: u64,
    pub termination_grace: Duration,
    pub readiness: GrpcProbe,
    pub liveness: GrpcProbe,
}

/// A probe's `grpc:` action: a `grpc.health.v1.Health/Check` of `service` on `port`.
pub struct GrpcProbe {
    pub port: u16,
    pub service: String,
}

impl Deployment {
    /// The file as it is.
    pub fn text() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn load() -> Self {
        let docs = YamlLoader::load_from_str(&Self::text()).unwrap_or_else(|e| panic!("{PATH}: {e}"));
        let deployment = docs
            .iter()
            .find(|d| d["kind"].as_str() == Some("Deployment"))
            .unwrap_or_else(|| panic!("{PATH}: no Deployment"));
        let pod = at(deployment, "spec.template.spec");
        let containers = at(pod, "containers").as_vec().expect("containers is a list");
        let container =
            containers.iter().find(|c| c["name"].as_str() == Some("greeter")).expect("a container named greeter");
        let ports =
            list(container, "ports").iter().map(|p| (string(p, "name"), number(p, "containerPort") as u16)).collect();
        Deployment {
            image: string(container, "image"),
            args: list(container, "args").iter().map(|a| a.as_str().expect("args are strings").to_owned()).collect(),
            ports,
            run_as_non_root: flag(pod, "securityContext.runAsNonRoot"),
            run_as_user: number(pod, "securityContext.runAsUser") as u32,
            run_as_group: number(pod, "securityContext.runAsGroup") as u32,
            read_only_root_filesystem: flag(container, "securityContext.readOnlyRootFilesystem"),
            allow_privilege_escalation: flag(container, "securityContext.allowPrivilegeEscalation"),
            capabilities_dropped: list(container, "securityContext.capabilities.drop")
                .iter()
                .map(|c| c.as_str().expect("capabilities are strings").to_owned())
                .collect(),
            memory_limit: quantity(&string(container, "resources.limits.memory")),
            termination_grace: Duration::from_secs(number(pod, "terminationGracePeriodSeconds") as u64),
            readiness: probe(at(container, "readinessProbe")),
            liveness: probe(at(container, "livenessProbe")),
        }
    }

    /// The value the arguments give `flag` (`--drain` → `5s`).
    pub fn arg(&self, flag: &str) -> &str {
        let at = self.args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag} in {:?}", self.args));
        self.args.get(at + 1).unwrap_or_else(|| panic!("{flag} has no value in {:?}", self.args))
    }

    /// A duration argument (`--drain`, `--grace`).
    pub fn duration_arg(&self, flag: &str) -> Duration {
        humantime::parse_duration(self.arg(flag)).unwrap_or_else(|e| panic!("{flag} {}: {e}", self.arg(flag)))
    }

    pub fn port(&self, name: &str) -> u16 {
        *self.ports.get(name).unwrap_or_else(|| panic!("no port named {name} in {:?}", self.ports))
    }
}

/// The node at a dotted path of keys; panics naming the path when it is missing.
fn at<'a>(node: &'a Yaml, path: &str) -> &'a Yaml {
    let found = path.split('.').fold(node, |node, key| &node[key]);
    assert!(!found.is_badvalue(), "deployment.yaml has no {path}");
    found
}

fn string(node: &Yaml, path: &str) -> String {
    at(node, path).as_str().unwrap_or_else(|| panic!("{path} is not a string")).to_owned()
}

fn number(node: &Yaml, path: &str) -> i64 {
    at(node, path).as_i64().unwrap_or_else(|| panic!("{path} is not an integer"))
}

fn flag(node: &Yaml, path: &str) -> bool {
    at(node, path).as_bool().unwrap_or_else(|| panic!("{path} is not true or false"))
}

fn list<'a>(node: &'a Yaml, path: &str) -> &'a [Yaml] {
    at(node, path).as_vec().unwrap_or_else(|| panic!("{path} is not a list"))
}

fn probe(node: &Yaml) -> GrpcProbe {
    let grpc = at(node, "grpc");
    // An absent service is "", the server as a whole, as Kubernetes defines it.
    let service = grpc["service"].as_str().unwrap_or_default().to_owned();
    GrpcProbe { port: number(grpc, "port") as u16, service }
}

/// A Kubernetes quantity of bytes: `128Mi`, `1Gi`, `500M`, `1000000`.
fn quantity(text: &str) -> u64 {
    let units =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000)];
    let (digits, unit) =
        units.iter().find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|d| (d, *unit))).unwrap_or((text, 1));
    digits.parse::<u64>().unwrap_or_else(|e| panic!("memory quantity {text:?}: {e}")) * unit
}
