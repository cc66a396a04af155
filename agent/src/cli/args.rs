//! The command line: `berth agent` and the kubectl-like client commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::AgentFlags;

/// berth: stable identities, per-pod volumes and DNS for small clusters, from the Kubernetes
/// YAML you already have.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The agent's API socket [default: /run/berth/berth.sock; for `agent`: <run-dir>/berth.sock].
    #[arg(long, global = true, env = "BERTH_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Talk to the agent at https://HOST:PORT (with the client certificate of --kubeconfig)
    /// instead of the local socket.
    #[arg(long, global = true, env = "BERTH_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// A kubeconfig (from `berth kubeconfig`) giving the server, CA and client certificate.
    #[arg(long, global = true, env = "BERTH_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent (the daemon) in the foreground.
    Agent(AgentFlags),
    /// Create or update objects from manifests (files, directories or - for stdin).
    Apply(ApplyArgs),
    /// List objects or show some of them.
    Get(GetArgs),
    /// Show an object in detail, with its events.
    Describe(DescribeArgs),
    /// Delete objects by kind and name, by label, or as listed in manifests.
    Delete(DeleteArgs),
    /// Print a container's log.
    Logs(LogsArgs),
    /// Run a command in a container.
    Exec(ExecArgs),
    /// Wait for a condition on objects.
    Wait(WaitArgs),
    /// Set the replica count of a StatefulSet.
    Scale(ScaleArgs),
    /// Manage rollouts of StatefulSets and DaemonSets.
    Rollout(RolloutArgs),
    /// Update fields of objects (`set image`).
    Set(SetArgs),
    /// Create an object from another (`create job NAME --from=cronjob/NAME`).
    Create(CreateArgs),
    /// Manage images in this node's store.
    Image(ImageArgs),
    /// Add, change or remove labels of an object (`label node NAME disk=ssd zone-`).
    Label(LabelArgs),
    /// Mark a node unschedulable: no new pods are placed on it.
    Cordon(CordonArgs),
    /// Mark a node schedulable again.
    Uncordon(CordonArgs),
    /// Cordon a node and move its pods away (StatefulSet pods highest ordinal first).
    Drain(DrainArgs),
    /// Node administration (`node forget NAME`).
    Node(NodeArgs),
    /// Print the client and agent versions.
    Version,
    /// Manage join tokens (`token create --ttl 24h`).
    Token(TokenArgs),
    /// Print a kubeconfig (server, CA, admin client certificate) for kubectl and `--kubeconfig`.
    Kubeconfig(KubeconfigArgs),
    /// Show the cluster's raft members (leader, voters, learners).
    Members,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token for `berth agent --join HOST:PORT --token TOKEN`.
    Create {
        /// How long the token is valid (s, m, h or d) [default: 24h].
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        ttl: String,
    },
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The server URL to put in it [default: this host's advertise address].
    #[arg(long = "for-server", value_name = "URL")]
    pub server: Option<String>,
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Wide,
    Json,
    Yaml,
    Name,
}

#[derive(Debug, Args)]
pub struct NamespaceArgs {
    /// The namespace [default: default].
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest file, directory, or - for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Descend into subdirectories of the given directories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// Print the objects as they would be applied without changing anything (server
    /// validates).
    #[arg(long, value_parser = ["server", "none"], default_missing_value = "server", num_args = 0..=1)]
    pub dry_run: Option<String>,
    /// Output format for the applied objects.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// KIND[,KIND...] [NAME...], or KIND/NAME...
    #[arg(required = true, value_name = "KIND [NAME]")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector (`app=web,tier!=db,env in (a,b)`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Field selector (`metadata.name=x`, `spec.nodeName=n`, `status.phase=Running`).
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
    /// Watch for changes after listing.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Omit the header row.
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// KIND [NAME...] or KIND/NAME
    #[arg(required = true, value_name = "KIND [NAME]")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// KIND NAME... or KIND/NAME...
    #[arg(value_name = "KIND [NAME]")]
    pub args: Vec<String>,
    /// Delete the objects listed in manifests.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<String>,
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Delete every object of the kind in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Seconds given to the pods to stop (-1: the object's own default; 0: immediately).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true, value_name = "SECONDS")]
    pub grace_period: i64,
    /// Remove at once without waiting for the pod to stop; needed to release a pod stuck on a
    /// lost node.
    #[arg(long)]
    pub force: bool,
    /// Same as --grace-period=1.
    #[arg(long)]
    pub now: bool,
    /// Wait until the objects are gone [default: true].
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// Do not fail when the object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// What happens to dependents: background, foreground or orphan.
    #[arg(long, value_parser = ["background", "foreground", "orphan", "true", "false"], default_value = "background")]
    pub cascade: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// POD, pod/POD, job/NAME or statefulset/NAME (its first pod).
    #[arg(value_name = "POD")]
    pub target: String,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// The container [default: the only or first container].
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// Keep printing as the log grows.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous instance of the container (after a restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N", allow_hyphen_values = true, default_value_t = -1)]
    pub tail: i64,
    /// Prefix lines with their timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// Print logs of all containers of the pod.
    #[arg(long)]
    pub all_containers: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// POD or pod/POD
    #[arg(value_name = "POD")]
    pub target: String,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal (accepted for kubectl habits; berth passes plain pipes).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// KIND/NAME... or KIND NAME...
    #[arg(required = true, value_name = "KIND/NAME")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// `condition=Ready`, `condition=Complete=true`, `delete`, or `jsonpath={.status.phase}=Running`.
    #[arg(long = "for", required = true, value_name = "CONDITION")]
    pub for_: String,
    /// How long to wait (`30s`, `5m`, `1h`) [default: 30s].
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub timeout: String,
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// sts/NAME or KIND NAME
    #[arg(required = true, value_name = "KIND/NAME")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    #[arg(long, required = true, value_name = "N", allow_hyphen_values = true)]
    pub replicas: i64,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Watch a rollout until it completes.
    Status(RolloutTarget),
    /// List the revisions.
    History(RolloutHistoryArgs),
    /// Go back to an earlier revision.
    Undo(RolloutUndoArgs),
    /// Restart all pods (in the update order).
    Restart(RolloutTarget),
}

#[derive(Debug, Args)]
pub struct RolloutTarget {
    #[arg(required = true, value_name = "KIND/NAME")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// For status: how long to wait (0: forever).
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub timeout: String,
    /// For status: return after one check instead of watching.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct RolloutHistoryArgs {
    #[arg(required = true, value_name = "KIND/NAME")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// Show the template of one revision.
    #[arg(long, value_name = "N")]
    pub revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    #[arg(required = true, value_name = "KIND/NAME")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// The revision to go back to [default: the previous one].
    #[arg(long, value_name = "N")]
    pub to_revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(subcommand)]
    pub command: SetCommand,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Change container images: `set image sts/NAME CONTAINER=IMAGE...`.
    Image(SetImageArgs),
}

#[derive(Debug, Args)]
pub struct SetImageArgs {
    /// KIND/NAME followed by CONTAINER=IMAGE pairs.
    #[arg(required = true, num_args = 2.., value_name = "KIND/NAME CONTAINER=IMAGE")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub command: CreateCommand,
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a Job, e.g. from a CronJob's template to run it now.
    Job(CreateJobArgs),
}

#[derive(Debug, Args)]
pub struct CreateJobArgs {
    pub name: String,
    /// cronjob/NAME whose jobTemplate to use.
    #[arg(long, required = true, value_name = "cronjob/NAME")]
    pub from: String,
    #[command(flatten)]
    pub ns: NamespaceArgs,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from its registry (or a mirror from the node's registries file).
    Pull(super::image::ImagePullArgs),
    /// Import an OCI layout directory, an oci-archive or a docker-archive (docker save) tar.
    Import(ImageImportArgs),
    /// List images in this node's store.
    #[command(alias = "list")]
    Ls(ImageLsArgs),
    /// Remove image references (and their blobs once unused).
    Rm(ImageRmArgs),
    /// Delete unreferenced image content (and, with --all, images no container uses).
    Prune(super::image::ImagePruneArgs),
}

#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// Path to the layout directory or archive.
    pub path: PathBuf,
    /// Name to give the image when the archive does not carry one.
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImageLsArgs {
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct ImageRmArgs {
    #[arg(required = true)]
    pub references: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// KIND NAME KEY=VALUE... [KEY-...], or KIND/NAME KEY=VALUE...
    #[arg(required = true, num_args = 2.., value_name = "KIND NAME KEY=VALUE")]
    pub args: Vec<String>,
    /// Allow changing a label that already has a value.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub ns: NamespaceArgs,
}

#[derive(Debug, Args)]
pub struct CordonArgs {
    /// The node's name.
    #[arg(value_name = "NODE")]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node's name.
    #[arg(value_name = "NODE")]
    pub node: String,
    /// Skip DaemonSet-managed pods (without it, drain refuses while there are any).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Also delete pods that no controller re-creates.
    #[arg(long)]
    pub force: bool,
    /// Also delete pods with emptyDir volumes (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Seconds each pod is given to stop; -1 uses the pod's own grace period.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// Give up after this long (`5m`, `90s`); 0 waits for ever.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Remove a lost node for good: its Node object goes, claims whose directory was on it are
    /// released (the data stays on that host's disk), its pods are re-created elsewhere, and
    /// the host leaves the raft group (a learner takes its voting seat).
    Forget {
        /// The node's name.
        name: String,
        /// Forget it even though it is Ready: its writes are then refused and it must join
        /// again with a new token.
        #[arg(long)]
        force: bool,
    },
}
