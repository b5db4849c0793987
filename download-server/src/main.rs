use clap::Parser;
use download_server::{Application, Config, telemetry};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(std::env::var_os("LOG_JSON").is_some());
    let app = Application::build(config).await?;
    println!("burnlink downloads on http://{}", app.address());
    app.run_until_stopped().await?;
    Ok(())
}
