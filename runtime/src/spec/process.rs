//! Kubernetes' rules for combining an image's config with a container's command, args, env and
//! working directory. Pure functions.

use crate::image::ImageConfig;

use super::SpecError;

/// The PATH containerd gives a process whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process arguments: `command` replaces the image's Entrypoint (and then the image's Cmd
/// is dropped), `args` replace its Cmd.
pub fn resolve_args(
    image: &ImageConfig,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = if command.is_empty() {
        let cmd = if args.is_empty() { &image.cmd } else { args };
        image.entrypoint.iter().chain(cmd).cloned().collect()
    } else {
        command.iter().chain(args).cloned().collect()
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    if argv[0].is_empty() {
        return Err(SpecError::EmptyExecutable);
    }
    Ok(argv)
}

/// The environment: `HOSTNAME`, then the image's variables, then the container's, a later
/// definition of a name replacing an earlier one in place. PATH defaults to [`DEFAULT_PATH`].
pub fn resolve_env(
    image: &ImageConfig,
    container_env: &[(String, String)],
    hostname: Option<&str>,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_owned(),
        None => env.push((name.to_owned(), value.to_owned())),
    };
    if let Some(h) = hostname {
        set("HOSTNAME", h);
    }
    for kv in &image.env {
        match kv.split_once('=') {
            Some((name, value)) if !name.is_empty() => set(name, value),
            _ => set(kv, ""),
        }
    }
    for (name, value) in container_env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(SpecError::BadEnvName { name: name.clone() });
        }
        set(name, value);
    }
    if !env.iter().any(|(n, _)| n == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    Ok(env.into_iter().map(|(n, v)| format!("{n}={v}")).collect())
}

/// The working directory: the container's, else the image's, else `/`. Must be absolute.
pub fn resolve_cwd(image: &ImageConfig, working_dir: Option<&str>) -> Result<String, SpecError> {
    let cwd = working_dir
        .filter(|s| !s.is_empty())
        .or(image.working_dir.as_deref().filter(|s| !s.is_empty()))
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir {
            path: cwd.to_owned(),
        });
    }
    Ok(cwd.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    /// image entrypoint, image cmd, command, args, expected argv.
    type ArgsCase<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_documents() {
        // The table of https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/
        let cases: &[ArgsCase] = &[
            // image entrypoint, image cmd, command, args => argv
            (&["/ep"], &["foo", "bar"], &[], &[], &["/ep", "foo", "bar"]),
            (&["/ep"], &["foo", "bar"], &["/cmd"], &[], &["/cmd"]),
            (
                &["/ep"],
                &["foo", "bar"],
                &[],
                &["zoo", "boo"],
                &["/ep", "zoo", "boo"],
            ),
            (
                &["/ep"],
                &["foo", "bar"],
                &["/cmd"],
                &["zoo", "boo"],
                &["/cmd", "zoo", "boo"],
            ),
            (&[], &["sh"], &[], &[], &["sh"]),
            (&[], &["sh"], &[], &["-c", "x"], &["-c", "x"]),
        ];
        for (ep, cmd, command, args, want) in cases {
            let got = resolve_args(&image(ep, cmd), &v(command), &v(args)).unwrap();
            assert_eq!(
                got,
                v(want),
                "ep {ep:?} cmd {cmd:?} command {command:?} args {args:?}"
            );
        }
    }

    #[test]
    fn a_container_without_any_command_is_an_error() {
        assert_eq!(
            resolve_args(&image(&[], &[]), &[], &[]),
            Err(SpecError::NoCommand)
        );
        assert_eq!(
            resolve_args(&image(&[], &[]), &v(&[""]), &[]),
            Err(SpecError::EmptyExecutable)
        );
    }

    #[test]
    fn container_env_overrides_image_env_in_place() {
        let img = ImageConfig {
            env: v(&["PATH=/bin", "A=1", "B=2", "FLAG"]),
            ..Default::default()
        };
        let got = resolve_env(
            &img,
            &[("B".into(), "3".into()), ("C".into(), "x=y".into())],
            Some("web-0"),
        )
        .unwrap();
        assert_eq!(
            got,
            v(&[
                "HOSTNAME=web-0",
                "PATH=/bin",
                "A=1",
                "B=3",
                "FLAG=",
                "C=x=y"
            ])
        );
    }

    #[test]
    fn path_gets_a_default_and_hostname_can_be_overridden() {
        let got = resolve_env(
            &ImageConfig::default(),
            &[("HOSTNAME".into(), "mine".into())],
            Some("pod"),
        )
        .unwrap();
        assert_eq!(got, v(&["HOSTNAME=mine", &format!("PATH={DEFAULT_PATH}")]));
    }

    #[test]
    fn bad_env_names_are_errors_naming_them() {
        let err =
            resolve_env(&ImageConfig::default(), &[("A=B".into(), "1".into())], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable name \"A=B\" is invalid: it must be non-empty and contain no '=' or NUL"
        );
    }

    #[test]
    fn working_dir_prefers_the_container_then_the_image() {
        let img = ImageConfig {
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        assert_eq!(resolve_cwd(&img, Some("/data")).unwrap(), "/data");
        assert_eq!(resolve_cwd(&img, None).unwrap(), "/srv");
        assert_eq!(resolve_cwd(&ImageConfig::default(), None).unwrap(), "/");
        assert!(matches!(
            resolve_cwd(&img, Some("rel")),
            Err(SpecError::RelativeWorkingDir { .. })
        ));
    }
}
