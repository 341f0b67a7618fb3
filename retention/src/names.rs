//! Closed sets of names stored and shown as text: lifecycle states and kinds.

/// Declares an enum whose values are stored and shown as fixed strings, with one
/// table of names: `ALL` (every value, in declaration order), `as_str`, `Display`,
/// `FromStr` (its error names the choices) and `TryFrom<String>` for rows read with
/// `#[sqlx(try_from = "String")]`. Serde attributes stay the caller's, and must spell
/// the same names (each user tests that).
///
/// ```
/// retention::named_enum! {
///     /// A light.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Light("light") { Red = "red", Green = "green" }
/// }
/// assert_eq!("green".parse::<Light>(), Ok(Light::Green));
/// assert_eq!(Light::Red.to_string(), "red");
/// assert_eq!("blue".parse::<Light>().unwrap_err(), "unknown light \"blue\"; one of: red, green");
/// ```
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The stored and shown name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                $name::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        format!(
                            "unknown {} {s:?}; one of: {}",
                            $what,
                            $name::ALL.map($name::as_str).join(", ")
                        )
                    })
            }
        }

        impl ::std::convert::TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> ::std::result::Result<Self, String> {
                s.parse()
            }
        }
    };
}
