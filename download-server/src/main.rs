use download_server::{Application, Config};
use server_kit::{config_file, telemetry};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // Flags, then environment, then `--config FILE`, then defaults.
    let config: Config = config_file::parse().unwrap_or_else(|e| e.exit());
    telemetry::init(config.service.log_format);
    let app = Application::build(config).await?;
    println!("burnlink downloads on {}", app.url());
    app.run_until_stopped().await?;
    Ok(())
}
