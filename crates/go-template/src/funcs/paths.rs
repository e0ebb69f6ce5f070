//! Sprig's path functions (forward-slash, as Go's `path` and `path/filepath` on Linux).

use super::*;

pub(super) const FUNCS: &[Func] = &[
    def(&["base", "osBase"], S1, None, |a| {
        Ok(path_base(a.s(0)).into())
    }),
    def(&["dir", "osDir"], S1, None, |a| Ok(path_dir(a.s(0)).into())),
    def(&["clean", "osClean"], S1, None, |a| {
        Ok(path_clean(a.s(0)).into())
    }),
    def(&["ext", "osExt"], S1, None, |a| Ok(path_ext(a.s(0)).into())),
    def(&["isAbs", "osIsAbs"], S1, None, |a| {
        Ok(Value::Bool(a.s(0).starts_with('/')))
    }),
];

fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    if rooted {
        format!("/{body}")
    } else if body.is_empty() {
        ".".into()
    } else {
        body
    }
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(p: &str) -> String {
    let i = p.rfind('/').map_or(0, |i| i + 1);
    path_clean(&p[..i])
}

fn path_ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return p[i..].to_string();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_paths() {
        assert_eq!(path_base("a/b.yaml"), "b.yaml");
        assert_eq!(path_dir("a/b/c.yaml"), "a/b");
        assert_eq!(path_ext("a/b.tar.gz"), ".gz");
    }
}
