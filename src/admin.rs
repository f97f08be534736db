//! `copains admin …`: instance administration from the server's shell.

use anyhow::Context;

use crate::cli::AdminCommand;
use crate::config::Config;

/// Runs one admin command.
pub async fn run(config: Config, cmd: AdminCommand) -> anyhow::Result<()> {
    let (state, _pg) = crate::serve::state(&config).await?;
    match cmd {
        AdminCommand::CreateUser {
            username,
            email,
            admin,
        } => {
            let (password, generated) = match std::env::var("COPAINS_NEW_PASSWORD") {
                Ok(p) => (p, false),
                Err(_) => (copains_api::secret::new_code(), true),
            };
            let user = copains_api::accounts::create_user_unchecked(
                &state, &username, &email, &password, admin,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created user {} (id {}){}",
                user.username,
                user.id,
                if admin { ", instance admin" } else { "" }
            );
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::ResetLink { user } => {
            let u = copains_api::accounts::find_user(&state.db, &user)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let link = copains_api::accounts::issue_reset_link(&state, u.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{link}");
        }
        AdminCommand::Suspend { user, reason } => {
            let u = copains_api::accounts::find_user(&state.db, &user)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            copains_api::accounts::set_suspended(&state, u.id, Some(&reason))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("suspending")?;
            println!("suspended {} and ended its sessions", u.username);
        }
        AdminCommand::Unsuspend { user } => {
            let u = copains_api::accounts::find_user(&state.db, &user)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            copains_api::accounts::set_suspended(&state, u.id, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("reinstated {}", u.username);
        }
    }
    state.db.close().await;
    Ok(())
}
