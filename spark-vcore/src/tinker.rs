//! Tinker, the application every Spark Core shipped with: four cloud functions over the Core's 16 pins.
//!
//! The argument formats and return codes are Tinker's own (the 2014 `application.cpp`):
//!
//! | function | argument | returns |
//! |---|---|---|
//! | `digitalwrite` | `"D7,HIGH"`, `"A0,LOW"` | 1 done; -1 bad pin number; -2 neither `HIGH` nor `LOW`; -3 bank is not `D`/`A` |
//! | `digitalread` | `"D3"` | 0 or 1; -1 bad pin number; -2 bank is not `D`/`A` |
//! | `analogwrite` | `"A1,200"` | 1 done; -1 bad pin number; -2 bank is not `D`/`A` |
//! | `analogread` | `"A5"` | 0..=4095; -1 bad pin number; -3 a `D` pin (no ADC); -2 bank is not `D`/`A` |
//!
//! Tinker reads the pin number as the second character minus `'0'` (anything outside 0..=7 is -1, checked first),
//! compares `HIGH` / `LOW` at offset 3 (so `"D7,HIGHER"` is `HIGH`), and parses the PWM value with `atol` and
//! truncates it to 8 bits as `analogWrite(uint16_t, uint8_t)` did (`"D0,300"` writes 44, `"D0,x"` writes 0).
//! `digitalread` switches the pin to an input with pull-down first, so it reads what drives the pin from outside
//! (set with [`Tinker::drive`]), not what was last written; `analogread` likewise reads the simulated ADC input
//! ([`Tinker::set_analog_input`]). PWM happens only on the pins with a timer channel (D0, D1, A0, A1, A4-A7); on
//! the others `analogwrite` still answers 1, as Tinker did, but the pin stays a plain output.

use core::fmt;

/// The function names Tinker registers, in registration order.
pub const FUNCTIONS: [&str; 4] = ["digitalread", "digitalwrite", "analogread", "analogwrite"];

/// Pins per bank (D0-D7, A0-A7).
pub const PINS_PER_BANK: u8 = 8;

/// The largest value the 12-bit ADC returns.
pub const ADC_MAX: u16 = 4095;

/// A pin bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bank {
    /// The digital pins D0-D7.
    D,
    /// The analog pins A0-A7.
    A,
}

/// One of the Core's 16 Tinker pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin {
    bank: Bank,
    number: u8,
}

impl Pin {
    /// A pin; `None` when `number` is not 0..=7.
    pub const fn new(bank: Bank, number: u8) -> Option<Pin> {
        if number < PINS_PER_BANK {
            Some(Pin { bank, number })
        } else {
            None
        }
    }

    /// The bank.
    pub const fn bank(self) -> Bank {
        self.bank
    }

    /// The number within the bank.
    pub const fn number(self) -> u8 {
        self.number
    }

    /// Whether the pin has a timer channel (PWM) on the Core.
    pub const fn has_pwm(self) -> bool {
        matches!(
            (self.bank, self.number),
            (Bank::D, 0 | 1) | (Bank::A, 0 | 1 | 4..=7)
        )
    }

    /// Every pin, D0..D7 then A0..A7.
    pub fn all() -> impl Iterator<Item = Pin> {
        [Bank::D, Bank::A]
            .into_iter()
            .flat_map(|bank| (0..PINS_PER_BANK).map(move |number| Pin { bank, number }))
    }

    fn index(self) -> usize {
        usize::from(self.number) + if self.bank == Bank::A { 8 } else { 0 }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bank = match self.bank {
            Bank::D => 'D',
            Bank::A => 'A',
        };
        write!(f, "{bank}{}", self.number)
    }
}

/// How a pin is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PinMode {
    /// Never configured since reset.
    #[default]
    Unset,
    /// Input with the internal pull-down (what `digitalread` selects).
    InputPulldown,
    /// Analog input (what `analogread` selects).
    AnalogInput,
    /// Push-pull output at a level.
    Output,
    /// PWM output at a duty value (0..=255).
    Pwm,
}

/// What one pin is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PinState {
    /// The configuration.
    pub mode: PinMode,
    /// The output level last written (`true` = HIGH); meaningful in [`PinMode::Output`].
    pub level: bool,
    /// The PWM duty last written; meaningful in [`PinMode::Pwm`].
    pub duty: u8,
    /// What an outside circuit drives onto the pin (`true` = HIGH; the pull-down reads LOW otherwise).
    pub driven: bool,
    /// The simulated voltage at the ADC input, 0..=4095.
    pub analog_input: u16,
}

/// Tinker's pins and functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tinker {
    pins: [PinState; 16],
}

impl Tinker {
    /// All pins unset, nothing driven.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls a Tinker function by name; `None` when Tinker has no such function.
    pub fn call(&mut self, function: &str, argument: &str) -> Option<i32> {
        let arg = argument.as_bytes();
        Some(match function {
            "digitalread" => self.digital_read(arg),
            "digitalwrite" => self.digital_write(arg),
            "analogread" => self.analog_read(arg),
            "analogwrite" => self.analog_write(arg),
            _ => return None,
        })
    }

    /// The state of a pin.
    pub fn pin(&self, pin: Pin) -> PinState {
        self.pins[pin.index()]
    }

    /// Drives a pin from outside (what `digitalread` sees).
    pub fn drive(&mut self, pin: Pin, high: bool) {
        self.pins[pin.index()].driven = high;
    }

    /// Sets the simulated ADC input of a pin (clamped to 0..=4095).
    pub fn set_analog_input(&mut self, pin: Pin, value: u16) {
        self.pins[pin.index()].analog_input = value.min(ADC_MAX);
    }

    /// Back to reset: every pin unset (outside drive and analog inputs stay, they are not the Core's).
    pub fn reset(&mut self) {
        for p in &mut self.pins {
            *p = PinState {
                driven: p.driven,
                analog_input: p.analog_input,
                ..PinState::default()
            };
        }
    }

    /// Tinker's pin number: the second character minus `'0'`; the error is -1.
    fn pin_number(arg: &[u8]) -> Result<u8, i32> {
        let c = i32::from(arg.get(1).copied().unwrap_or(0)) - i32::from(b'0');
        u8::try_from(c)
            .ok()
            .filter(|&n| n < PINS_PER_BANK)
            .ok_or(-1)
    }

    fn bank(arg: &[u8]) -> Option<Bank> {
        match arg.first() {
            Some(b'D') => Some(Bank::D),
            Some(b'A') => Some(Bank::A),
            _ => None,
        }
    }

    /// Arduino `String::substring(from, to)`: clamped, empty when `from` is past the end.
    fn substring(arg: &[u8], from: usize, to: usize) -> &[u8] {
        let to = to.min(arg.len());
        arg.get(from..to).unwrap_or(&[])
    }

    fn digital_read(&mut self, arg: &[u8]) -> i32 {
        let number = match Self::pin_number(arg) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let Some(bank) = Self::bank(arg) else {
            return -2;
        };
        let p = &mut self.pins[Pin { bank, number }.index()];
        p.mode = PinMode::InputPulldown;
        i32::from(p.driven)
    }

    fn digital_write(&mut self, arg: &[u8]) -> i32 {
        let number = match Self::pin_number(arg) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let level = if Self::substring(arg, 3, 7) == b"HIGH" {
            true
        } else if Self::substring(arg, 3, 6) == b"LOW" {
            false
        } else {
            return -2;
        };
        let Some(bank) = Self::bank(arg) else {
            return -3;
        };
        let p = &mut self.pins[Pin { bank, number }.index()];
        p.mode = PinMode::Output;
        p.level = level;
        1
    }

    fn analog_read(&mut self, arg: &[u8]) -> i32 {
        let number = match Self::pin_number(arg) {
            Ok(n) => n,
            Err(e) => return e,
        };
        match Self::bank(arg) {
            Some(Bank::D) => -3,
            Some(Bank::A) => {
                let p = &mut self.pins[Pin {
                    bank: Bank::A,
                    number,
                }
                .index()];
                p.mode = PinMode::AnalogInput;
                i32::from(p.analog_input)
            }
            None => -2,
        }
    }

    fn analog_write(&mut self, arg: &[u8]) -> i32 {
        let number = match Self::pin_number(arg) {
            Ok(n) => n,
            Err(e) => return e,
        };
        // analogWrite(uint16_t pin, uint8_t value): the long from atol is truncated to its low byte.
        let duty = atol(Self::substring(arg, 3, usize::MAX)) as u8;
        let Some(bank) = Self::bank(arg) else {
            return -2;
        };
        let pin = Pin { bank, number };
        let p = &mut self.pins[pin.index()];
        if pin.has_pwm() {
            p.mode = PinMode::Pwm;
            p.duty = duty;
        } else {
            p.mode = PinMode::Output;
        }
        1
    }
}

/// C `atol` as newlib does it: leading white space, an optional sign, decimal digits; anything else ends the
/// number; 0 without digits. Overflow wraps (the C behaviour is undefined; 32-bit `long` on the Core).
fn atol(s: &[u8]) -> i32 {
    let mut rest = s;
    while let [c, tail @ ..] = rest {
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C) {
            rest = tail;
        } else {
            break;
        }
    }
    let negative = match rest.first() {
        Some(b'-') => {
            rest = &rest[1..];
            true
        }
        Some(b'+') => {
            rest = &rest[1..];
            false
        }
        _ => false,
    };
    let magnitude = rest
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0i32, |acc, &c| {
            acc.wrapping_mul(10).wrapping_add(i32::from(c - b'0'))
        });
    if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atol_follows_c() {
        assert_eq!(atol(b"200"), 200);
        assert_eq!(atol(b"  -12abc"), -12);
        assert_eq!(atol(b"+7"), 7);
        assert_eq!(atol(b"x1"), 0);
        assert_eq!(atol(b""), 0);
    }

    #[test]
    fn pin_names_and_pwm_table() {
        let names: Vec<String> = Pin::all().map(|p| p.to_string()).collect();
        assert_eq!(names.len(), 16);
        assert_eq!(names[0], "D0");
        assert_eq!(names[15], "A7");
        let pwm: Vec<String> = Pin::all()
            .filter(|p| p.has_pwm())
            .map(|p| p.to_string())
            .collect();
        assert_eq!(pwm, ["D0", "D1", "A0", "A1", "A4", "A5", "A6", "A7"]);
        assert!(Pin::new(Bank::D, 8).is_none());
    }
}
