//! `copains admin …`: instance administration from the server's shell.

use anyhow::Context;

use crate::cli::AdminCommand;
use crate::config::Config;

/// Runs one admin command.
pub async fn run(config: Config, cmd: AdminCommand) -> anyhow::Result<()> {
    // Always a free id: the `COPAINS_NODE_ID` of the server this runs beside (e.g. in its
    // container's environment) is that server's, held by it.
    let (state, _pg, node) = crate::serve::state(&config, None).await?;
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
    node.release().await;
    state.db.close().await;
    Ok(())
}
