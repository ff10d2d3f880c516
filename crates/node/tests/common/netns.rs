//! A small internet in Linux network namespaces, for tests across real NATs. Every address is
//! in 198.18.0.0/15 (reserved for benchmarking); nothing is connected to the host's network, so
//! no packet can leave these namespaces.
//!
//! ```text
//!                 pub (the "internet"): bridge br0 198.18.0.1/24, runs phonebook + relay
//!          ┌──────────────┬──────────────────┬───────────────┐
//!    ra wan 198.18.0.11   rb wan 198.18.0.12   c 198.18.0.21 (a public host)
//!    ra lan 198.18.1.1    rb lan 198.18.2.1
//!          │                  │
//!    a 198.18.1.2         b 198.18.2.2
//! ```
//!
//! The routers `ra` and `rb` masquerade (source NAT) what leaves their `wan`, and their
//! firewall silently drops what arrives on `wan` unless it belongs to a connection from inside:
//! a home router. Linux keeps the source port when it can, so the mapping is endpoint-independent and
//! hole punching can work.
//!
//! Namespaces are named `tcn-<pid>-<role>`. They are removed when the [`Net`] is dropped, even
//! after a failed assertion; ones left by a killed run are removed by the next.

#![allow(dead_code)]

use std::process::Command;

/// The roles, in order of creation.
const ROLES: [&str; 6] = ["pub", "ra", "rb", "a", "b", "c"];

/// The public addresses.
pub const PHONEBOOK_IP: &str = "198.18.0.1";
pub const ROUTER_A_IP: &str = "198.18.0.11";
pub const ROUTER_B_IP: &str = "198.18.0.12";
pub const PUBLIC_HOST_IP: &str = "198.18.0.21";

/// Packets of connections opened from inside (iptables match).
const FROM_INSIDE: &str = "-m conntrack --ctstate ESTABLISHED,RELATED";

/// The namespaces of one topology.
pub struct Net {
    prefix: String,
    made: Vec<String>,
}

/// Why namespaces cannot be used here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for tool in [["ip", "-V"], ["iptables", "-V"]] {
        match Command::new(tool[0]).arg(tool[1]).output() {
            Ok(o) if o.status.success() => {}
            _ => {
                return Some(format!(
                    "`{}` is missing (apt-get install iproute2 iptables)",
                    tool[0]
                ));
            }
        }
    }
    let probe = format!("tcn-{}-probe", std::process::id());
    if let Err(e) = run("ip", &["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let nat = run("ip", &["netns", "exec", &probe, "iptables", "-t", "nat", "-L", "-n"]);
    let _ = run("ip", &["netns", "del", &probe]);
    nat.err().map(|e| format!("iptables cannot set up NAT in a namespace: {e}"))
}

impl Net {
    /// Builds the topology. (Links have no added latency: `tc netem` is not available on every
    /// kernel, this machine's among them.)
    pub fn build() -> Result<Net, String> {
        remove_stale();
        let prefix = format!("tcn-{}", std::process::id());
        let mut net = Net { prefix, made: Vec::new() };
        for role in ROLES {
            let ns = net.ns(role);
            run("ip", &["netns", "add", &ns])?;
            net.made.push(ns.clone());
            net.sh(role, "ip link set lo up")?;
        }
        // The internet: a bridge in `pub`, with the phonebook's address.
        net.sh("pub", "ip link add br0 type bridge")?;
        net.sh("pub", &format!("ip addr add {PHONEBOOK_IP}/24 dev br0"))?;
        net.sh("pub", "ip link set br0 up")?;
        // Routers and the public host hang on the bridge.
        for (role, port, inside, addr) in [
            ("ra", "ra0", "wan", ROUTER_A_IP),
            ("rb", "rb0", "wan", ROUTER_B_IP),
            ("c", "c0", "eth0", PUBLIC_HOST_IP),
        ] {
            let ns = net.ns(role);
            net.sh("pub", &format!("ip link add {port} type veth peer name {inside} netns {ns}"))?;
            net.sh("pub", &format!("ip link set {port} master br0"))?;
            net.sh("pub", &format!("ip link set {port} up"))?;
            net.sh(role, &format!("ip addr add {addr}/24 dev {inside}"))?;
            net.sh(role, &format!("ip link set {inside} up"))?;
        }
        // The private segments behind the routers.
        for (router, host, subnet) in [("ra", "a", "198.18.1"), ("rb", "b", "198.18.2")] {
            let host_ns = net.ns(host);
            for (role, line) in [
                (router, format!("ip link add lan type veth peer name eth0 netns {host_ns}")),
                (router, format!("ip addr add {subnet}.1/24 dev lan")),
                (router, "ip link set lan up".to_owned()),
                (host, format!("ip addr add {subnet}.2/24 dev eth0")),
                (host, "ip link set eth0 up".to_owned()),
                (host, format!("ip route add default via {subnet}.1")),
                (router, "iptables -t nat -A POSTROUTING -o wan -j MASQUERADE".to_owned()),
                // Like a home router, it lets in only what belongs to connections from
                // inside, and ignores (rather than refuses) the rest.
                (router, format!("iptables -A FORWARD -i wan -o lan {FROM_INSIDE} -j ACCEPT")),
                (router, "iptables -A FORWARD -i wan -o lan -j DROP".to_owned()),
                (router, format!("iptables -A INPUT -i wan {FROM_INSIDE} -j ACCEPT")),
                (router, "iptables -A INPUT -i wan -j DROP".to_owned()),
            ] {
                net.sh(role, &line)?;
            }
            net.exec(router, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        }
        Ok(net)
    }

    /// The namespace of `role`.
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Runs `line` (split at spaces) in `role`'s namespace.
    pub fn sh(&self, role: &str, line: &str) -> Result<String, String> {
        self.exec(role, &line.split_whitespace().collect::<Vec<_>>())
    }

    /// Runs a command in `role`'s namespace.
    pub fn exec(&self, role: &str, args: &[&str]) -> Result<String, String> {
        let ns = self.ns(role);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

/// The arguments of a phonebook in `pub` with its relay on TCP and QUIC port 4001, keeping
/// its data in `data`. The relay probes 198.18.0.0/15, which is not a global range.
pub fn phonebook_args(data: &std::path::Path) -> Vec<String> {
    [
        format!("--listen={PHONEBOOK_IP}:7878"),
        format!("--data-dir={}", data.display()),
        "--writes-per-minute=0".into(),
        "--presence-ttl=60".into(),
        "--relay".into(),
        format!("--relay-listen=/ip4/{PHONEBOOK_IP}/tcp/4001"),
        format!("--relay-listen=/ip4/{PHONEBOOK_IP}/udp/4001/quic-v1"),
        "--relay-probe-private".into(),
    ]
    .into()
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("removing namespace {ns}: {e}");
            }
        }
    }
}

/// Removes namespaces left by runs that were killed.
fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else { return };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("tcn-") else { continue };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output =
        Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
