//! `app-server user …`: user management from the command line, against the same database
//! and data directory as the server, without starting it.

use sqlx::AnyPool;

use crate::config::{Config, UserCommand};
use crate::error::{AppError, StartupError};
use crate::users::{self, Password, Username};

/// A connection to the app's database for administration.
pub struct Admin {
    db: AnyPool,
    files: file_store::Files,
}

impl Admin {
    /// Validates `config`, creates the data directory and connects (migrating if needed).
    pub async fn connect(config: &Config) -> Result<Admin, StartupError> {
        config.validate()?;
        crate::startup::prepare_data_dir(&config.service.data(), &[]).await?;
        let db = crate::db::connect(&config.database_url()).await?;
        Ok(Admin {
            db,
            files: config
                .file_store
                .open(config.service.data().files())
                .await?,
        })
    }

    /// Runs one command; `password` is needed by `add` and `passwd`. Returns what to tell the
    /// operator.
    pub async fn run(
        &self,
        command: &UserCommand,
        password: Option<&str>,
    ) -> Result<String, AppError> {
        let need_password = || {
            password
                .ok_or_else(|| {
                    AppError::BadRequest("a password is needed on standard input".into())
                })
                .and_then(Password::parse)
        };
        match command {
            UserCommand::Add { name, admin } => {
                let username = Username::parse(name)?;
                let user = users::create(&self.db, &username, need_password()?).await?;
                if *admin {
                    crate::accounts::set_admin(&self.db, &user.id, true).await?;
                    return Ok(format!("administrator {username} created"));
                }
                Ok(format!("user {username} created"))
            }
            UserCommand::Passwd { name } => {
                let username = Username::parse(name)?;
                users::change_password(&self.db, &username, need_password()?)
                    .await
                    .map_err(|e| unknown_user(e, &username))?;
                Ok(format!(
                    "password of {username} changed; their sessions are ended"
                ))
            }
            UserCommand::Del { name } => {
                let username = Username::parse(name)?;
                let removed = users::delete(&self.db, &self.files, &username)
                    .await
                    .map_err(|e| unknown_user(e, &username))?;
                Ok(format!(
                    "user {username} deleted with {removed} stored file(s)"
                ))
            }
            UserCommand::Admin { name, revoke } => {
                let username = Username::parse(name)?;
                crate::accounts::set_admin_by_name(&self.db, &username, !*revoke)
                    .await
                    .map_err(|e| unknown_user(e, &username))?;
                Ok(if *revoke {
                    format!("{username} is no longer an administrator")
                } else {
                    format!("{username} is an administrator")
                })
            }
        }
    }
}

fn unknown_user(e: AppError, username: &Username) -> AppError {
    match e {
        AppError::NotFound => AppError::BadRequest(format!("no user named {username}")),
        other => other,
    }
}
