//! The Core's USB serial port in listening mode (blinking blue): the one-key commands its firmware answered, as a
//! sans-IO console. Bytes from the host go in through [`ListeningConsole::handle_input`]; what the Core writes back
//! comes out of [`ListeningConsole::poll_output`], and the Wi-Fi credentials a user typed out of
//! [`ListeningConsole::poll_credentials`]. The binary (`spark-vcore --serial`) carries them over a pseudo-terminal.
//!
//! | key | answer |
//! |---|---|
//! | `i` | `Your core id is <24 hex digits>` |
//! | `m` | `Your core MAC address is`, then the MAC as six hex pairs joined by `:` |
//! | `v` | `system firmware version: <version>` |
//! | `w` | `SSID: `, `Security 0=unsecured, 1=WEP, 2=WPA, 3=WPA2: ` (asked again until 0 to 3), `Password: ` unless 0, then the Core saves the credentials and says it will connect |
//!
//! Lines end in CR LF; what the user types at a prompt is echoed, a line ends at CR or LF, and backspace (8 or 127)
//! takes back a character. Other keys are ignored.

use std::collections::VecDeque;
use std::fmt;

/// Wi-Fi security, as the prompt numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `0`: an open network.
    Unsecured,
    /// `1`.
    Wep,
    /// `2`.
    Wpa,
    /// `3`.
    Wpa2,
}

impl Security {
    fn from_digit(c: u8) -> Option<Security> {
        match c {
            b'0' => Some(Security::Unsecured),
            b'1' => Some(Security::Wep),
            b'2' => Some(Security::Wpa),
            b'3' => Some(Security::Wpa2),
            _ => None,
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Unsecured => "unsecured",
            Security::Wep => "WEP",
            Security::Wpa => "WPA",
            Security::Wpa2 => "WPA2",
        })
    }
}

/// Credentials typed after `w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The network name (at most 32 bytes).
    pub ssid: String,
    /// Its security.
    pub security: Security,
    /// The password (empty for an open network; at most 64 bytes).
    pub password: String,
}

/// What the console waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Key,
    Ssid,
    Security { ssid: String },
    Password { ssid: String, security: Security },
}

/// The listening-mode console of one Core.
#[derive(Debug)]
pub struct ListeningConsole {
    id_hex: String,
    mac: [u8; 6],
    version: String,
    expect: Expect,
    line: Vec<u8>,
    out: VecDeque<u8>,
    saved: VecDeque<Credentials>,
}

const SECURITY_PROMPT: &str = "Security 0=unsecured, 1=WEP, 2=WPA, 3=WPA2: ";

impl ListeningConsole {
    /// The console of the Core with this id, MAC address and firmware version.
    pub fn new(id_hex: &str, mac: [u8; 6], version: &str) -> Self {
        ListeningConsole {
            id_hex: id_hex.to_owned(),
            mac,
            version: version.to_owned(),
            expect: Expect::Key,
            line: Vec::new(),
            out: VecDeque::new(),
            saved: VecDeque::new(),
        }
    }

    /// A MAC address for a simulated Core: TI's prefix 08:00:28 (the CC3000's maker), then the id's last three bytes.
    pub fn mac_for(id: &[u8; 12]) -> [u8; 6] {
        [0x08, 0x00, 0x28, id[9], id[10], id[11]]
    }

    fn say(&mut self, text: &str) {
        self.out.extend(text.as_bytes());
    }

    /// Bytes from the host.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.handle_byte(b);
        }
    }

    fn handle_byte(&mut self, b: u8) {
        if self.expect == Expect::Key {
            self.handle_key(b);
            return;
        }
        let limit = match self.expect {
            Expect::Ssid => 32,
            Expect::Security { .. } => 1,
            _ => 64,
        };
        match b {
            b'\r' | b'\n' => {
                self.say("\r\n");
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                self.handle_line(line);
            }
            8 | 127 if self.line.pop().is_some() => self.out.extend([8, b' ', 8]),
            8 | 127 => {}
            _ if self.line.len() < limit => {
                self.line.push(b);
                self.out.push_back(b);
            }
            _ => {}
        }
    }

    fn handle_key(&mut self, key: u8) {
        match key {
            b'i' => {
                let line = format!("Your core id is {}\r\n", self.id_hex);
                self.say(&line);
            }
            b'm' => {
                let mac: Vec<String> = self.mac.iter().map(|b| format!("{b:02x}")).collect();
                let text = format!("Your core MAC address is\r\n{}\r\n", mac.join(":"));
                self.say(&text);
            }
            b'v' => {
                let line = format!("system firmware version: {}\r\n", self.version);
                self.say(&line);
            }
            b'w' => {
                self.say("SSID: ");
                self.expect = Expect::Ssid;
            }
            _ => {}
        }
    }

    fn handle_line(&mut self, line: String) {
        match std::mem::replace(&mut self.expect, Expect::Key) {
            Expect::Key => {}
            Expect::Ssid => {
                self.say(SECURITY_PROMPT);
                self.expect = Expect::Security { ssid: line };
            }
            Expect::Security { ssid } => match line.bytes().next().and_then(Security::from_digit) {
                None => {
                    self.say(SECURITY_PROMPT);
                    self.expect = Expect::Security { ssid };
                }
                Some(Security::Unsecured) => self.save(ssid, Security::Unsecured, String::new()),
                Some(security) => {
                    self.say("Password: ");
                    self.expect = Expect::Password { ssid, security };
                }
            },
            Expect::Password { ssid, security } => self.save(ssid, security, line),
        }
    }

    fn save(&mut self, ssid: String, security: Security, password: String) {
        self.say("Thanks! Wait about 7 seconds while I save those credentials...\r\n\r\n");
        self.say("Awesome. Now we'll connect!\r\n\r\n");
        self.say("If you see a pulsing cyan light, your Spark Core\r\n");
        self.say("has connected to the Cloud and is ready to go!\r\n\r\n");
        self.saved.push_back(Credentials {
            ssid,
            security,
            password,
        });
    }

    /// What the Core writes to the host next (empty when it has nothing to say).
    #[must_use]
    pub fn poll_output(&mut self) -> Vec<u8> {
        self.out.drain(..).collect()
    }

    /// Credentials the user finished typing, oldest first.
    #[must_use]
    pub fn poll_credentials(&mut self) -> Option<Credentials> {
        self.saved.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> ListeningConsole {
        ListeningConsole::new(
            "53ff6c065075535119511687",
            [0x08, 0x00, 0x28, 0x51, 0x16, 0x87],
            "0.3.4",
        )
    }

    fn said(c: &mut ListeningConsole) -> String {
        String::from_utf8(c.poll_output()).unwrap()
    }

    #[test]
    fn one_key_commands() {
        let mut c = console();
        c.handle_input(b"i");
        assert_eq!(said(&mut c), "Your core id is 53ff6c065075535119511687\r\n");
        c.handle_input(b"m");
        assert_eq!(
            said(&mut c),
            "Your core MAC address is\r\n08:00:28:51:16:87\r\n"
        );
        c.handle_input(b"v");
        assert_eq!(said(&mut c), "system firmware version: 0.3.4\r\n");
        c.handle_input(b"x\r\n");
        assert_eq!(said(&mut c), "");
    }

    #[test]
    fn wifi_credentials_with_a_bad_security_answer_and_a_backspace() {
        let mut c = console();
        c.handle_input(b"wHomeNet\r");
        assert_eq!(said(&mut c), format!("SSID: HomeNet\r\n{SECURITY_PROMPT}"));
        c.handle_input(b"7\r");
        assert_eq!(said(&mut c), format!("7\r\n{SECURITY_PROMPT}"));
        c.handle_input(b"3\rsecreX\x7ft\r");
        let text = said(&mut c);
        assert!(
            text.starts_with("3\r\nPassword: secreX\x08 \x08t\r\nThanks!"),
            "{text:?}"
        );
        assert_eq!(
            c.poll_credentials(),
            Some(Credentials {
                ssid: "HomeNet".into(),
                security: Security::Wpa2,
                password: "secret".into()
            })
        );
        // An open network asks no password.
        c.handle_input(b"wCafe\n0\n");
        assert_eq!(c.poll_credentials().unwrap().security, Security::Unsecured);
        assert!(!said(&mut c).contains("Password"));
    }
}

/// The console on a pseudo-terminal: the Core's USB serial port as a host sees it (Unix only).
#[cfg(unix)]
pub mod pty {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;

    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};

    use super::{Credentials, ListeningConsole};

    /// An open pseudo-terminal: the Core holds the master side; a host opens [`SerialPort::path`].
    #[derive(Debug)]
    pub struct SerialPort {
        master: File,
        /// The terminal a host opens (`/dev/pts/N`).
        pub path: PathBuf,
        /// Held open so the port stays usable between hosts (a master with no terminal open reads an error), and
        /// set to raw mode so bytes pass as the Core's USB serial passes them.
        _terminal: OwnedFd,
    }

    impl SerialPort {
        /// Opens a new pseudo-terminal.
        pub fn open() -> std::io::Result<SerialPort> {
            let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
            grantpt(&master)?;
            unlockpt(&master)?;
            let name = ptsname(&master, Vec::new())?;
            let path = PathBuf::from(name.to_string_lossy().into_owned());
            let terminal = rustix::fs::open(
                &path,
                OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut raw = tcgetattr(&terminal)?;
            raw.make_raw();
            tcsetattr(&terminal, OptionalActions::Now, &raw)?;
            Ok(SerialPort {
                master: File::from(master),
                path,
                _terminal: terminal,
            })
        }

        /// Answers the host with `console` until the port fails; `saved` hears each set of Wi-Fi credentials.
        pub fn serve(
            mut self,
            mut console: ListeningConsole,
            mut saved: impl FnMut(Credentials),
        ) -> std::io::Result<()> {
            let mut buf = [0u8; 256];
            loop {
                let n = self.master.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                console.handle_input(&buf[..n]);
                let out = console.poll_output();
                self.master.write_all(&out)?;
                while let Some(c) = console.poll_credentials() {
                    saved(c);
                }
            }
        }
    }
}
