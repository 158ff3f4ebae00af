//! The cloud commands, on `spark-api`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Map, Value};
use spark_api::{
    AccessToken, Client, Credentials, FirmwareFile, Publish, StoredToken, TokenLifetime,
};

use crate::output::Context;
use crate::{Failure, Outcome};

/// The cloud options, on the commands that use the cloud (and their subcommands).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct Settings {
    /// The cloud API URL (default: the configured `apiUrl`, else `https://api.particle.io`).
    #[arg(long, global = true, env = "SPARK_API_URL")]
    pub(crate) api_url: Option<String>,
    /// The access token to use instead of the stored one.
    #[arg(
        long,
        global = true,
        env = "PARTICLE_ACCESS_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
}

/// `spark login`.
#[derive(Args, Debug)]
pub(crate) struct LoginArgs {
    /// The account e-mail (asked on stdin when absent).
    #[arg(short, long)]
    username: Option<String>,
    /// The password (asked on stdin when absent; prefer `SPARK_PASSWORD` to the command line).
    #[arg(short, long, env = "SPARK_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

/// Account credentials for the token commands.
#[derive(Args, Debug)]
pub(crate) struct AccountArgs {
    /// The account e-mail (default: the logged-in user).
    #[arg(short, long)]
    username: Option<String>,
    /// The password (asked on stdin when absent).
    #[arg(short, long, env = "SPARK_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

/// `spark token ...`
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// List the account's tokens.
    List(AccountArgs),
    /// Create a new token.
    Create {
        #[command(flatten)]
        account: AccountArgs,
        /// Lifetime in seconds (0: never expires).
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// Revoke a token.
    Delete {
        #[command(flatten)]
        account: AccountArgs,
        /// The token to revoke.
        token: String,
    },
    /// Revoke tokens in bulk: `--all` revokes every token of the account (and ends their event streams).
    Revoke {
        #[command(flatten)]
        account: AccountArgs,
        /// Every token of the account, this tool's own included (log in again afterwards).
        #[arg(long, required = true)]
        all: bool,
    },
}

/// `spark list`.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Only devices whose name or id contains this, or `online` / `offline`.
    filter: Option<String>,
}

/// A device argument.
#[derive(Args, Debug)]
pub(crate) struct DeviceArg {
    /// Device id or name.
    device: String,
}

/// `spark call`.
#[derive(Args, Debug)]
pub(crate) struct CallArgs {
    /// Device id or name.
    device: String,
    /// Function name.
    function: String,
    /// The argument.
    #[arg(default_value = "")]
    argument: String,
}

/// `spark get`.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// Device id or name.
    device: String,
    /// Variable name.
    variable: String,
}

/// `spark publish`.
#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    /// Event name.
    name: String,
    /// Event data.
    data: Option<String>,
    /// Publish a private event (the default).
    #[arg(long, conflicts_with = "public")]
    private: bool,
    /// Publish a public event.
    #[arg(long)]
    public: bool,
    /// Time to live in seconds.
    #[arg(long)]
    ttl: Option<u32>,
}

/// `spark subscribe`.
#[derive(Args, Debug)]
pub(crate) struct SubscribeArgs {
    /// Event name prefix (`mine` means `--mine`, as in the original CLI).
    prefix: Option<String>,
    /// Only events from this device.
    #[arg(long, conflicts_with = "mine")]
    device: Option<String>,
    /// Only events from your devices.
    #[arg(long)]
    mine: bool,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
}

/// `spark flash --cloud`.
#[derive(Debug)]
pub(crate) struct FlashArgs {
    /// Device id or name.
    pub(crate) device: String,
    /// A `.bin` file, source files, or the name of an app the cloud knows (`tinker`).
    pub(crate) files: Vec<String>,
    /// Return once the cloud accepted the update, without waiting for the device's outcome.
    pub(crate) no_wait: bool,
    /// How long to wait for the device's outcome.
    pub(crate) timeout: std::time::Duration,
    /// Send a binary even when it is not firmware for the device's platform.
    pub(crate) force: bool,
}

/// `spark compile`.
#[derive(Args, Debug)]
pub(crate) struct CompileArgs {
    /// Source files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where to save the binary.
    #[arg(long = "saveTo", alias = "save-to", required = true)]
    save_to: PathBuf,
    /// Platform id (0 = Core).
    #[arg(long, default_value_t = 0)]
    platform_id: u32,
    /// Device OS version to build against.
    #[arg(long)]
    target: Option<String>,
}

/// The particle-cli configuration file this tool writes and reads.
fn config_path() -> Result<PathBuf, Failure> {
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .ok_or_else(|| Failure("no home directory (HOME is not set)".into()))?;
    Ok(Path::new(&home)
        .join(".particle")
        .join("particle.config.json"))
}

fn read_config() -> Result<Map<String, Value>, Failure> {
    let path = config_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Failure(format!("{}: not a JSON object", path.display()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(Failure(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_config(map: &Map<String, Value>) -> Result<PathBuf, Failure> {
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(map.clone()))?;
    crate::output::write_private(&path, text.as_bytes())
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
}

fn base_url(settings: &Settings, stored: Option<&StoredToken>) -> String {
    settings
        .api_url
        .clone()
        .or_else(|| stored.and_then(|s| s.api_url.clone()))
        .unwrap_or_else(|| spark_api::PARTICLE_API_URL.to_owned())
}

fn anonymous_client(settings: &Settings) -> Result<Client, Failure> {
    let stored = StoredToken::discover_in(None, home_dir().as_deref()).ok();
    Ok(Client::builder()
        .base_url(base_url(settings, stored.as_ref()))
        .user_agent(concat!("spark-cli/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A client with the token from `--token`, `PARTICLE_ACCESS_TOKEN` or the configuration file.
pub(crate) fn client(settings: &Settings) -> Result<Client, Failure> {
    let stored = StoredToken::discover_in(settings.token.as_deref(), home_dir().as_deref())
        .map_err(|_| Failure("not logged in: run `spark login` or pass --token".into()))?;
    Ok(Client::builder()
        .base_url(base_url(settings, Some(&stored)))
        .access_token(stored.token.clone())
        .user_agent(concat!("spark-cli/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

fn ask(prompt: &str) -> Result<String, Failure> {
    eprint!("{prompt}: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure(format!("cannot read stdin: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        return Err(Failure(format!("no {} given", prompt.to_lowercase())));
    }
    Ok(line)
}

fn credentials(username: Option<String>, password: Option<String>) -> Result<Credentials, Failure> {
    let username = match username {
        Some(u) => u,
        None => match read_config()?.get("username").and_then(Value::as_str) {
            Some(u) => u.to_owned(),
            None => ask("Email address")?,
        },
    };
    let password = match password {
        Some(p) => p,
        // At a terminal the password is not echoed; piped in, it is one line of stdin.
        None if std::io::stdin().is_terminal() => rpassword::prompt_password("Password: ")
            .map_err(|e| Failure(format!("cannot read the password: {e}")))?,
        None => ask("Password")?,
    };
    Ok(Credentials::new(username, password))
}

/// Describe an API error in one line.
pub(crate) fn api_failure(e: spark_api::Error) -> Failure {
    if e.is_auth() {
        let detail = e
            .body()
            .and_then(|b| b.message())
            .unwrap_or_else(|| e.to_string());
        return Failure(format!("access denied: {detail}"));
    }
    Failure(e.to_string())
}

#[derive(Serialize)]
struct LoginReport<'a> {
    username: &'a str,
    api_url: &'a str,
    config: String,
    expires_in: Option<u64>,
}

/// `spark login`.
pub(crate) async fn login(ctx: &Context, settings: &Settings, args: LoginArgs) -> Outcome {
    let api = anonymous_client(settings)?;
    let creds = credentials(
        Some(match args.username {
            Some(u) => u,
            None => ask("Email address")?,
        }),
        args.password,
    )?;
    let spinner = ctx.spinner("logging in");
    let grant = api
        .login(&creds, TokenLifetime::Default)
        .await
        .map_err(api_failure);
    spinner.finish_and_clear();
    let grant = grant?;
    let mut config = read_config()?;
    config.insert(
        "access_token".into(),
        Value::String(grant.access_token.expose().to_owned()),
    );
    config.insert("username".into(), Value::String(creds.username.clone()));
    if let Some(url) = &settings.api_url {
        config.insert("apiUrl".into(), Value::String(url.clone()));
    }
    let path = write_config(&config)?;
    if ctx.json {
        return ctx.print_json(&LoginReport {
            username: &creds.username,
            api_url: api.base_url(),
            config: path.display().to_string(),
            expires_in: grant.expires_in,
        });
    }
    crate::out!("Successfully completed login!");
    Ok(())
}

/// `spark whoami`: the account the token belongs to (`GET /v1/user`).
pub(crate) async fn whoami(ctx: &Context, settings: &Settings) -> Outcome {
    let api = client(settings)?;
    let user = api.user().await.map_err(api_failure)?;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "username": user.username,
            "api_url": api.base_url(),
        }));
    }
    crate::out!("{}", user.username);
    Ok(())
}

/// `spark logout`: removes the token from the configuration file.
pub(crate) fn logout(ctx: &Context) -> Outcome {
    let mut config = read_config()?;
    let had = config.remove("access_token").is_some();
    write_config(&config)?;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "logged_out": had }));
    }
    crate::out!(
        "{}",
        if had {
            "You have been logged out."
        } else {
            "You were not logged in."
        }
    );
    Ok(())
}

#[derive(Serialize)]
struct TokenRow {
    token: String,
    expires_at: Option<String>,
    client: Option<String>,
}

/// `spark token ...`
pub(crate) async fn token(ctx: &Context, settings: &Settings, command: TokenCommand) -> Outcome {
    let api = anonymous_client(settings)?;
    match command {
        TokenCommand::List(account) => {
            let creds = credentials(account.username, account.password)?;
            let tokens = api.list_access_tokens(&creds).await.map_err(api_failure)?;
            let rows: Vec<TokenRow> = tokens
                .into_iter()
                .map(|t| TokenRow {
                    token: t.token.expose().to_owned(),
                    expires_at: t.expires_at,
                    client: t.client,
                })
                .collect();
            if ctx.json {
                return ctx.print_json(&rows);
            }
            for row in rows {
                crate::out!("{}", row.client.as_deref().unwrap_or("(unknown client)"));
                crate::out!(" Token:      {}", row.token);
                crate::out!(
                    " Expires at: {}",
                    row.expires_at.as_deref().unwrap_or("never")
                );
                crate::out!("");
            }
            Ok(())
        }
        TokenCommand::Create {
            account,
            expires_in,
        } => {
            let creds = credentials(account.username, account.password)?;
            let lifetime = match expires_in {
                None => TokenLifetime::Default,
                Some(0) => TokenLifetime::Never,
                Some(s) => TokenLifetime::Seconds(s),
            };
            let grant = api.login(&creds, lifetime).await.map_err(api_failure)?;
            if ctx.json {
                return ctx.print_json(&serde_json::json!({
                    "token": grant.access_token.expose(),
                    "expires_in": grant.expires_in,
                }));
            }
            crate::out!(
                "New access token expires in {}",
                match grant.expires_in {
                    None | Some(0) => "never".to_owned(),
                    Some(s) => format!("{s} seconds"),
                }
            );
            crate::out!("    {}", grant.access_token.expose());
            Ok(())
        }
        TokenCommand::Delete { account, token } => {
            let creds = credentials(account.username, account.password)?;
            api.delete_access_token(&creds, &AccessToken::new(token.clone()))
                .await
                .map_err(api_failure)?;
            if ctx.json {
                return ctx.print_json(&serde_json::json!({ "deleted": token }));
            }
            crate::out!("successfully deleted {token}");
            Ok(())
        }
        TokenCommand::Revoke { account, all } => {
            // Clap refuses the command without `--all`: the only bulk revocation there is.
            let _ = all;
            let creds = credentials(account.username, account.password)?;
            let revoked = api
                .delete_all_access_tokens(&creds)
                .await
                .map_err(api_failure)?;
            if ctx.json {
                return ctx.print_json(&serde_json::json!({ "revoked": revoked }));
            }
            match revoked {
                Some(n) => crate::out!("revoked all {n} token(s) of the account"),
                None => crate::out!("revoked every token of the account"),
            }
            Ok(())
        }
    }
}

/// `spark list`.
pub(crate) async fn list(ctx: &Context, settings: &Settings, args: ListArgs) -> Outcome {
    let api = client(settings)?;
    let spinner = ctx.spinner("listing devices");
    let devices = api.list_devices().await.map_err(api_failure);
    let mut devices = match devices {
        Ok(d) => d,
        Err(e) => {
            spinner.finish_and_clear();
            return Err(e);
        }
    };
    if let Some(filter) = &args.filter {
        devices.retain(|d| match filter.as_str() {
            "online" => d.connected,
            "offline" => !d.connected,
            f => d.id.to_string().contains(f) || d.name.as_deref().is_some_and(|n| n.contains(f)),
        });
    }
    // Fetch variables and functions of the connected devices, as the original CLI does.
    let mut detailed = Vec::with_capacity(devices.len());
    for device in devices {
        if device.connected {
            match api.device(&device.id).await {
                Ok(full) => detailed.push(full),
                Err(_) => detailed.push(device),
            }
        } else {
            detailed.push(device);
        }
    }
    spinner.finish_and_clear();
    if ctx.json {
        return ctx.print_json(&detailed);
    }
    if detailed.is_empty() {
        crate::out!("No devices found.");
    }
    for d in &detailed {
        let platform = d
            .platform_id
            .and_then(|p| u16::try_from(p).ok())
            .and_then(spark_dfu::platform::Platform::from_id)
            .map_or("Core", |p| p.name());
        crate::out!(
            "{} [{}] ({platform}) is {}{}",
            d.name.as_deref().unwrap_or("<no name>"),
            d.id,
            if d.connected { "online" } else { "offline" },
            match d.server_key.as_deref() {
                Some("previous") =>
                    ", still on the previous server key (move it before the key is retired)",
                Some("retired") => ", on a retired server key (it cannot reconnect until moved)",
                _ => "",
            }
        );
        print_members(d);
    }
    Ok(())
}

fn print_members(d: &spark_api::Device) {
    if let Some(vars) = d.variables.as_ref().filter(|v| !v.is_empty()) {
        crate::out!("  Variables:");
        for (name, ty) in vars {
            crate::out!("    {name} ({ty})");
        }
    }
    if let Some(funcs) = d.functions.as_ref().filter(|f| !f.is_empty()) {
        crate::out!("  Functions:");
        for f in funcs {
            crate::out!("    int {f}(String args)");
        }
    }
}

/// `spark info`.
pub(crate) async fn info(ctx: &Context, settings: &Settings, args: DeviceArg) -> Outcome {
    let api = client(settings)?;
    let d = api.device(&args.device).await.map_err(api_failure)?;
    if ctx.json {
        return ctx.print_json(&d);
    }
    crate::out!(
        "{} [{}] is {}",
        d.name.as_deref().unwrap_or("<no name>"),
        d.id,
        if d.connected { "online" } else { "offline" }
    );
    if let Some(app) = &d.last_app {
        crate::out!("  Last app: {app}");
    }
    if let Some(heard) = &d.last_heard {
        crate::out!("  Last heard: {heard}");
    }
    if let Some(v) = &d.cc3000_patch_version {
        crate::out!("  CC3000 service pack: {v}");
    }
    if let Some(deep) = d.requires_deep_update {
        crate::out!(
            "  Needs the deep update: {}",
            if deep { "yes" } else { "no" }
        );
    }
    print_members(&d);
    Ok(())
}

/// `spark call`.
pub(crate) async fn call(ctx: &Context, settings: &Settings, args: CallArgs) -> Outcome {
    let api = client(settings)?;
    let result = api
        .call_function(&args.device, &args.function, &args.argument)
        .await
        .map_err(api_failure)?;
    if ctx.json {
        return ctx.print_json(&result);
    }
    crate::out!("{}", result.return_value);
    Ok(())
}

/// `spark get`.
pub(crate) async fn get(ctx: &Context, settings: &Settings, args: GetArgs) -> Outcome {
    let api = client(settings)?;
    let result = api
        .variable(&args.device, &args.variable)
        .await
        .map_err(api_failure)?;
    if ctx.json {
        return ctx.print_json(&result);
    }
    match &result.result {
        spark_api::VariableValue::String(s) => crate::out!("{s}"),
        spark_api::VariableValue::Int(i) => crate::out!("{i}"),
        spark_api::VariableValue::Double(f) => crate::out!("{f}"),
        spark_api::VariableValue::Bool(b) => crate::out!("{b}"),
        other => crate::out!("{other}"),
    }
    Ok(())
}

/// `spark publish`.
pub(crate) async fn publish(ctx: &Context, settings: &Settings, args: PublishArgs) -> Outcome {
    let api = client(settings)?;
    let mut event = Publish::new(args.name.clone());
    if let Some(data) = &args.data {
        event = event.data(data.clone());
    }
    if args.public {
        event = event.public();
    }
    if let Some(ttl) = args.ttl {
        event = event.ttl(ttl);
    }
    api.publish(&event).await.map_err(api_failure)?;
    if ctx.json {
        return ctx.print_json(&event);
    }
    crate::out!(
        "Published {} event: {}",
        if event.private { "private" } else { "public" },
        event.name
    );
    Ok(())
}

/// `spark subscribe`: one JSON object per event, until Ctrl-C or `--count` events.
pub(crate) async fn subscribe(ctx: &Context, settings: &Settings, args: SubscribeArgs) -> Outcome {
    let api = client(settings)?;
    let (prefix, mine) = match args.prefix.as_deref() {
        Some("mine") => (None, true),
        p => (p, args.mine),
    };
    let mut stream = match (&args.device, mine) {
        (Some(device), _) => api.subscribe_device(device, prefix),
        (None, true) => api.subscribe_mine(prefix),
        (None, false) => api.subscribe_all(prefix),
    };
    if !ctx.json {
        eprintln!(
            "Subscribing to {}{}",
            prefix.map_or_else(|| "all events".to_owned(), |p| format!("\"{p}\"")),
            match (&args.device, mine) {
                (Some(d), _) => format!(" from device {d}"),
                (None, true) => " from my devices".to_owned(),
                (None, false) => " from the firehose (public) and my devices".to_owned(),
            }
        );
    }
    let mut seen = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    loop {
        tokio::select! {
            next = stream.next_event() => match next {
                Some(Ok(event)) => {
                    crate::out!("{}", serde_json::to_string(&event)?);
                    seen += 1;
                    if args.count.is_some_and(|c| seen >= c) {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(api_failure(e)),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn firmware_file(path: &Path) -> Result<FirmwareFile, Failure> {
    let contents = crate::files::read(path, crate::files::IMAGE)?;
    let name = path
        .file_name()
        .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    Ok(FirmwareFile::new(name, contents))
}

/// What `flash --cloud` sends.
enum Payload {
    /// An app the cloud knows by name.
    App(String),
    /// A firmware binary, checked for the device's platform.
    Binary(FirmwareFile),
    /// Sources for the cloud to compile.
    Sources(Vec<FirmwareFile>),
}

/// A name without a path separator or an extension is an app name (`tinker`); anything else is a file, which
/// must exist.
fn is_app_name(arg: &str) -> bool {
    !arg.contains(['/', '\\', '.']) && !Path::new(arg).exists()
}

/// Reads and checks what the user asked to flash, before anything is sent.
async fn flash_payload(api: &Client, args: &FlashArgs) -> Result<Payload, Failure> {
    let first = &args.files[0];
    if args.files.len() == 1 && is_app_name(first) {
        return Ok(Payload::App(first.clone()));
    }
    let path = Path::new(first);
    if args.files.len() > 1 || path.extension().is_none_or(|e| e != "bin") {
        let files = args
            .files
            .iter()
            .map(|f| firmware_file(Path::new(f)))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Payload::Sources(files));
    }
    let file = firmware_file(path)?;
    if args.force {
        return Ok(Payload::Binary(file));
    }
    crate::usb::firmware_check(path, &file.contents)?;
    let device = api.device(&args.device).await.map_err(api_failure)?;
    let platform_id = device.platform_id.unwrap_or(0);
    let platform = u16::try_from(platform_id)
        .ok()
        .and_then(spark_dfu::platform::Platform::from_id)
        .ok_or_else(|| Failure(format!("{}: unknown platform {platform_id}", args.device)))?;
    spark_dfu::module::check_for(
        &file.contents,
        platform,
        spark_dfu::platform::Item::UserFirmware,
    )
    .map_err(|e| {
        Failure(format!(
            "{}: {e} (the device is a {})",
            path.display(),
            platform.name()
        ))
    })?;
    Ok(Payload::Binary(file))
}

#[derive(Serialize)]
struct FlashReport {
    device: String,
    /// `app`, `binary` or `sources`.
    kind: &'static str,
    /// The app name or the file names.
    what: String,
    /// `started` (with `--no-wait`), `success` or `failed`.
    status: &'static str,
    /// The device's outcome as the cloud published it (`spark/flash/status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
}

/// Waits for the stream to be connected, so no event published after this is missed.
async fn until_connected(stream: &mut spark_api::EventStream) -> Result<(), Failure> {
    loop {
        match stream.next_item().await {
            Some(Ok(spark_api::StreamItem::Connected)) => return Ok(()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(api_failure(e)),
            None => return Err(Failure("the event stream ended before it began".into())),
        }
    }
}

/// The device's `spark/flash/status` outcome (`success ...` or `failed ...`), skipping `started`.
async fn flash_outcome(stream: &mut spark_api::EventStream) -> Result<String, Failure> {
    while let Some(event) = stream.next_event().await {
        let event = event.map_err(api_failure)?;
        let data = event.data.unwrap_or_default();
        if event.name == "spark/flash/status" && !data.starts_with("started") {
            return Ok(data);
        }
    }
    Err(Failure(
        "the event stream ended before the device reported the outcome".into(),
    ))
}

/// `spark flash --cloud`: checks what is sent, sends it, and (unless `--no-wait`) follows the device's
/// `spark/flash/status` event to report success or failure.
pub(crate) async fn flash(ctx: &Context, settings: &Settings, args: FlashArgs) -> Outcome {
    let api = client(settings)?;
    let payload = flash_payload(&api, &args).await?;
    let mut events = if args.no_wait {
        None
    } else {
        let mut stream = api.subscribe_device(&args.device, Some("spark/flash/status"));
        until_connected(&mut stream).await?;
        Some(stream)
    };
    let spinner = ctx.spinner(format!("flashing {}", args.device));
    let (kind, what, sent) = match &payload {
        Payload::App(app) => (
            "app",
            app.clone(),
            api.flash_known_app(&args.device, app).await,
        ),
        Payload::Binary(file) => {
            let sent = api.flash_binary(&args.device, file).await;
            ("binary", file.file_name.clone(), sent)
        }
        Payload::Sources(files) => {
            let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
            let sent = api.flash_sources(&args.device, files).await;
            ("sources", names.join(" "), sent)
        }
    };
    if let Err(e) = sent {
        spinner.finish_and_clear();
        return Err(api_failure(e));
    }
    let outcome = match events.as_mut() {
        None => None,
        Some(stream) => {
            spinner.set_message(format!("waiting for {} to report the update", args.device));
            let waited = tokio::time::timeout(args.timeout, flash_outcome(stream)).await;
            spinner.finish_and_clear();
            Some(waited.map_err(|_| {
                Failure(format!(
                    "{} did not report the update's outcome within {} s",
                    args.device,
                    args.timeout.as_secs()
                ))
            })??)
        }
    };
    spinner.finish_and_clear();
    flash_report(ctx, args.device, kind, what, outcome)
}

fn flash_report(
    ctx: &Context,
    device: String,
    kind: &'static str,
    what: String,
    outcome: Option<String>,
) -> Outcome {
    let status = match &outcome {
        None => "started",
        Some(o) if o.starts_with("success") => "success",
        Some(_) => "failed",
    };
    let report = FlashReport {
        device,
        kind,
        what,
        status,
        outcome,
    };
    if ctx.json {
        ctx.print_json(&report)?;
    } else if status == "started" {
        crate::out!("Flash device OK: update of {} started", report.device);
    } else if status == "success" {
        crate::out!(
            "Flash device OK: {} updated with {}",
            report.device,
            report.what
        );
    }
    if status == "failed" {
        let why = report.outcome.unwrap_or_default();
        return Err(Failure(format!(
            "{}: the update failed: {why}",
            report.device
        )));
    }
    Ok(())
}

#[derive(Serialize)]
struct CompileReport {
    binary_id: String,
    saved_to: String,
    size: usize,
    expires_at: Option<String>,
}

/// `spark compile`.
pub(crate) async fn compile(ctx: &Context, settings: &Settings, args: CompileArgs) -> Outcome {
    let api = client(settings)?;
    let files = args
        .files
        .iter()
        .map(|f| firmware_file(f))
        .collect::<Result<Vec<_>, _>>()?;
    let spinner = ctx.spinner(format!("compiling {} file(s)", files.len()));
    let compiled = api
        .compile(&files, Some(args.platform_id), args.target.as_deref())
        .await
        .map_err(api_failure);
    let compiled = match compiled {
        Ok(c) => c,
        Err(e) => {
            spinner.finish_and_clear();
            return Err(e);
        }
    };
    spinner.set_message("downloading the binary");
    let binary = api
        .download_binary(&compiled.binary_id)
        .await
        .map_err(api_failure);
    spinner.finish_and_clear();
    let binary = binary?;
    std::fs::write(&args.save_to, &binary)
        .map_err(|e| Failure(format!("cannot write {}: {e}", args.save_to.display())))?;
    let report = CompileReport {
        binary_id: compiled.binary_id,
        saved_to: args.save_to.display().to_string(),
        size: binary.len(),
        expires_at: compiled.expires_at,
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    crate::out!("Compile succeeded.");
    crate::out!("Saved firmware image to: {}", report.saved_to);
    Ok(())
}
