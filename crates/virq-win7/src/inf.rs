//! INF interrupt policy: what the `.HW` section of a driver package tells the PnP manager.
//!
//! Windows 7 only grants message-signalled interrupts to a third-party PCI function when the
//! device's *hardware* key holds `Interrupt Management\MessageSignaledInterruptProperties\
//! MSISupported = 1`. The INF writes that key through an `AddReg` directive of the
//! `[<install>.HW]` section; the same lines reached from anywhere else (the install section
//! itself, a services section, a `.HW` section of a decoration Windows did not pick) land in
//! the wrong key and are ignored (failure catalogue row 13). This module parses just enough of
//! the INF grammar to reproduce that decision and to say where misplaced keys sit.

use std::collections::BTreeMap;
use thiserror::Error;

/// Registry subkey (under HKR of the hardware key) that enables message-signalled interrupts.
pub const MSI_PROPERTIES_SUBKEY: &str = r"Interrupt Management\MessageSignaledInterruptProperties";
/// Registry subkey (under HKR of the hardware key) with the interrupt affinity policy.
pub const AFFINITY_POLICY_SUBKEY: &str = r"Interrupt Management\Affinity Policy";
/// `FLG_ADDREG_TYPE_DWORD`: the only value type the interrupt-management values accept.
pub const FLG_ADDREG_TYPE_DWORD: u32 = 0x0001_0001;
/// `FLG_ADDREG_KEYONLY`: a line that only creates the key.
pub const FLG_ADDREG_KEYONLY: u32 = 0x0000_0010;

/// The interrupt policy the PnP arbiter reads from the device's hardware key.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct InfPolicy {
    /// `MSISupported` was set to a non-zero DWORD through the `.HW` AddReg.
    pub msi_supported: bool,
    /// `MessageNumberLimit`, when present: the most messages the device may be granted
    /// (the arbiter treats 0 like 1: a message grant is never empty).
    pub message_number_limit: Option<u32>,
}

impl InfPolicy {
    /// No interrupt-management keys at all: Windows 7 grants a line interrupt.
    pub const fn line_only() -> Self {
        Self {
            msi_supported: false,
            message_number_limit: None,
        }
    }

    /// `MSISupported = 1` with an optional `MessageNumberLimit`.
    pub const fn msi(message_number_limit: Option<u32>) -> Self {
        Self {
            msi_supported: true,
            message_number_limit,
        }
    }

    /// Parse an INF and take the policy for `install_section` (undecorated name) on `arch`.
    pub fn from_inf(text: &str, install_section: &str, arch: InfArch) -> Result<Self, InfError> {
        Ok(Inf::parse(text)?
            .interrupt_settings(install_section, arch)?
            .policy)
    }
}

/// `Interrupt Management\Affinity Policy\DevicePolicy` values (`IRQ_DEVICE_POLICY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum IrqDevicePolicy {
    /// `IrqPolicyMachineDefault` (0).
    MachineDefault,
    /// `IrqPolicyAllCloseProcessors` (1).
    AllCloseProcessors,
    /// `IrqPolicyOneCloseProcessor` (2).
    OneCloseProcessor,
    /// `IrqPolicyAllProcessorsInMachine` (3).
    AllProcessorsInMachine,
    /// `IrqPolicySpecifiedProcessors` (4).
    SpecifiedProcessors,
    /// `IrqPolicySpreadMessagesAcrossAllProcessors` (5).
    SpreadMessagesAcrossAllProcessors,
}

impl IrqDevicePolicy {
    /// Decode the registry DWORD; unknown values are rejected like an invalid policy.
    pub fn from_dword(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::MachineDefault,
            1 => Self::AllCloseProcessors,
            2 => Self::OneCloseProcessor,
            3 => Self::AllProcessorsInMachine,
            4 => Self::SpecifiedProcessors,
            5 => Self::SpreadMessagesAcrossAllProcessors,
            _ => return None,
        })
    }
}

/// The optional affinity policy keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AffinityPolicy {
    /// `Affinity Policy\DevicePolicy`, when set.
    pub device_policy: Option<IrqDevicePolicy>,
    /// `Affinity Policy\DevicePriority`, when set.
    pub device_priority: Option<u32>,
}

/// Which decorated install section Windows picks (`.NTamd64` beats `.NT` beats none).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum InfArch {
    /// `.NTamd64`: 64-bit Windows.
    #[default]
    Amd64,
    /// `.NTx86`: 32-bit Windows.
    X86,
}

impl InfArch {
    /// The platform decoration, as it appears after the install section name.
    pub fn decoration(self) -> &'static str {
        match self {
            InfArch::Amd64 => "NTamd64",
            InfArch::X86 => "NTx86",
        }
    }
}

/// An interrupt-management value written from a place Windows does not read it from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MisplacedKey {
    /// The section holding the registry line.
    pub section: String,
    /// 1-based line number in the INF text.
    pub line: usize,
    /// Value name (`MSISupported`, `MessageNumberLimit`, ...).
    pub value_name: String,
}

/// Everything the INF says about interrupts for one install section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InfInterruptSettings {
    /// `MSISupported` and `MessageNumberLimit` as Windows reads them.
    pub policy: InfPolicy,
    /// The affinity policy keys, when any is set.
    pub affinity: Option<AffinityPolicy>,
    /// The decorated install section Windows picked.
    pub install_section: String,
    /// The `.HW` section that was read, when it exists.
    pub hw_section: Option<String>,
    /// The AddReg sections reached from the `.HW` section, in directive order.
    pub hw_addreg_sections: Vec<String>,
    /// Interrupt-management lines that do not count because of where they are.
    pub misplaced: Vec<MisplacedKey>,
}

/// Why an INF could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InfError {
    /// A `[` without its `]`.
    #[error("line {line}: section header is not closed with ']'")]
    UnterminatedSectionHeader {
        /// 1-based line number.
        line: usize,
    },
    /// An entry before the first section header.
    #[error("line {line}: text outside any section")]
    LineOutsideSection {
        /// 1-based line number.
        line: usize,
    },
    /// A `"` without its closing quote.
    #[error("line {line}: unterminated quoted string")]
    UnterminatedQuote {
        /// 1-based line number.
        line: usize,
    },
    /// The install section does not exist, decorated or not.
    #[error("no install section [{name}] (or a decorated variant) in the INF")]
    NoInstallSection {
        /// The section asked for.
        name: String,
    },
    /// An `AddReg` directive names a section the INF lacks.
    #[error("section [{referenced_from}] names AddReg section [{section}] which does not exist")]
    MissingAddRegSection {
        /// The missing section.
        section: String,
        /// The section with the directive.
        referenced_from: String,
    },
    /// An interrupt-management value not written as `FLG_ADDREG_TYPE_DWORD`.
    #[error("line {line}: {value_name} must be a DWORD (flags 0x00010001), found flags {flags}")]
    NotADword {
        /// 1-based line number.
        line: usize,
        /// The value name.
        value_name: String,
        /// The flags field as written.
        flags: String,
    },
    /// A field that should be a number is not one.
    #[error("line {line}: '{text}' is not a number")]
    BadNumber {
        /// 1-based line number.
        line: usize,
        /// The field as written.
        text: String,
    },
    /// `DevicePolicy` outside the `IRQ_DEVICE_POLICY` values.
    #[error("line {line}: DevicePolicy {value} is not a valid IRQ_DEVICE_POLICY")]
    BadDevicePolicy {
        /// 1-based line number.
        line: usize,
        /// The value.
        value: u32,
    },
    /// No `[Models]` entry lists the hardware ID.
    #[error("no models entry for hardware id '{hardware_id}'")]
    NoModelForHardwareId {
        /// The hardware ID looked for.
        hardware_id: String,
    },
}

/// One logical line of a section: its fields (quotes removed, strings substituted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfLine {
    /// 1-based number of the line where the entry starts.
    pub line: usize,
    /// Text left of an unquoted `=`, when there is one.
    pub key: Option<String>,
    /// Comma-separated fields right of the `=` (or of the whole line).
    pub fields: Vec<String>,
}

/// A section: its name as written and its lines in order (same-named sections are merged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfSection {
    /// The section name as written.
    pub name: String,
    /// The section's entries, in order.
    pub lines: Vec<InfLine>,
}

/// A parsed INF: the sections, looked up case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inf {
    sections: Vec<InfSection>,
    index: BTreeMap<String, usize>,
}

impl Inf {
    /// Parse INF text: sections, `;` comments, quoted strings, `\` line continuation and
    /// `%token%` substitution from `[Strings]`.
    pub fn parse(text: &str) -> Result<Self, InfError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut inf = Inf::default();
        let mut current: Option<usize> = None;
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let stripped = strip_comment(raw, line_no)?;
            let (start, mut joined) = match pending.take() {
                Some((start, mut acc)) => {
                    acc.push_str(stripped.trim_start());
                    (start, acc)
                }
                None => (line_no, stripped.to_string()),
            };
            let trimmed_end = joined.trim_end().len();
            joined.truncate(trimmed_end);
            if let Some(body) = joined.strip_suffix('\\') {
                pending = Some((start, body.to_string()));
                continue;
            }
            let entry = joined.trim();
            if entry.is_empty() {
                continue;
            }
            if let Some(rest) = entry.strip_prefix('[') {
                let Some(close) = rest.find(']') else {
                    return Err(InfError::UnterminatedSectionHeader { line: start });
                };
                let name = rest[..close].trim().to_string();
                let key = name.to_ascii_lowercase();
                let idx = match inf.index.get(&key) {
                    Some(&idx) => idx,
                    None => {
                        inf.sections.push(InfSection {
                            name,
                            lines: Vec::new(),
                        });
                        inf.index.insert(key, inf.sections.len() - 1);
                        inf.sections.len() - 1
                    }
                };
                current = Some(idx);
                continue;
            }
            let Some(idx) = current else {
                return Err(InfError::LineOutsideSection { line: start });
            };
            let parsed = split_entry(entry, start)?;
            inf.sections[idx].lines.push(parsed);
        }
        if let Some((start, body)) = pending {
            if let Some(idx) = current {
                let entry = body.trim();
                if !entry.is_empty() {
                    let parsed = split_entry(entry, start)?;
                    inf.sections[idx].lines.push(parsed);
                }
            }
        }
        inf.substitute_strings();
        Ok(inf)
    }

    /// A section by name, ignoring case.
    pub fn section(&self, name: &str) -> Option<&InfSection> {
        self.index
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.sections[i])
    }

    /// Every section in the order it first appeared.
    pub fn sections(&self) -> &[InfSection] {
        &self.sections
    }

    fn substitute_strings(&mut self) {
        let Some(strings) = self.section("Strings") else {
            return;
        };
        let table: BTreeMap<String, String> = strings
            .lines
            .iter()
            .filter_map(|l| {
                Some((
                    l.key.as_ref()?.to_ascii_lowercase(),
                    l.fields.first().cloned().unwrap_or_default(),
                ))
            })
            .collect();
        for section in &mut self.sections {
            if section.name.eq_ignore_ascii_case("Strings") {
                continue;
            }
            for line in &mut section.lines {
                if let Some(key) = &mut line.key {
                    *key = substitute(key, &table);
                }
                for field in &mut line.fields {
                    *field = substitute(field, &table);
                }
            }
        }
    }

    /// The decorated install section Windows would pick for `install` on `arch`.
    pub fn pick_install_section(&self, install: &str, arch: InfArch) -> Option<&InfSection> {
        [
            format!("{install}.{}", arch.decoration()),
            format!("{install}.NT"),
            install.to_string(),
        ]
        .iter()
        .find_map(|name| self.section(name))
    }

    /// Install sections named by the models sections for a hardware id (first match wins,
    /// as the driver store ranks an exact id match).
    /// Every install section a model line of the `[Manufacturer]` models names for `arch`
    /// (the sections a user's INF can install), in order, without repeats.
    pub fn install_sections(&self, arch: InfArch) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let Some(manufacturer) = self.section("Manufacturer") else {
            return out;
        };
        for entry in &manufacturer.lines {
            let Some(models) = entry.fields.first() else {
                continue;
            };
            let decorated = entry.fields[1..]
                .iter()
                .find(|d| d.eq_ignore_ascii_case(arch.decoration()))
                .map(|d| format!("{models}.{d}"));
            let section = decorated
                .as_deref()
                .and_then(|name| self.section(name))
                .or_else(|| self.section(models));
            for model in section.map(|s| s.lines.as_slice()).unwrap_or_default() {
                if let Some(install) = model.fields.first()
                    && !out.iter().any(|o| o.eq_ignore_ascii_case(install))
                {
                    out.push(install.clone());
                }
            }
        }
        out
    }

    /// The install section a models section of `[Manufacturer]` lists for `hardware_id`,
    /// reading the `arch`-decorated models section when there is one, as Windows picks it.
    pub fn install_section_for_hardware_id(
        &self,
        hardware_id: &str,
        arch: InfArch,
    ) -> Result<String, InfError> {
        let not_found = || InfError::NoModelForHardwareId {
            hardware_id: hardware_id.to_string(),
        };
        let manufacturer = self.section("Manufacturer").ok_or_else(not_found)?;
        for entry in &manufacturer.lines {
            let Some(models) = entry.fields.first() else {
                continue;
            };
            let decorated = entry.fields[1..]
                .iter()
                .find(|d| d.eq_ignore_ascii_case(arch.decoration()))
                .map(|d| format!("{models}.{d}"));
            let section = decorated
                .as_deref()
                .and_then(|name| self.section(name))
                .or_else(|| self.section(models));
            let Some(section) = section else { continue };
            for model in &section.lines {
                if model.fields[1..]
                    .iter()
                    .any(|id| id.eq_ignore_ascii_case(hardware_id))
                {
                    return Ok(model.fields[0].clone());
                }
            }
        }
        Err(not_found())
    }

    /// Read the interrupt-management keys that Windows would apply for `install` on `arch`.
    pub fn interrupt_settings(
        &self,
        install: &str,
        arch: InfArch,
    ) -> Result<InfInterruptSettings, InfError> {
        let chosen =
            self.pick_install_section(install, arch)
                .ok_or_else(|| InfError::NoInstallSection {
                    name: install.to_string(),
                })?;
        let hw_name = format!("{}.HW", chosen.name);
        let hw = self.section(&hw_name);
        let mut addreg = Vec::new();
        if let Some(hw) = hw {
            for name in addreg_targets(hw) {
                let target = self
                    .section(&name)
                    .ok_or_else(|| InfError::MissingAddRegSection {
                        section: name.clone(),
                        referenced_from: hw.name.clone(),
                    })?;
                if !addreg
                    .iter()
                    .any(|s: &String| s.eq_ignore_ascii_case(&target.name))
                {
                    addreg.push(target.name.clone());
                }
            }
        }
        let mut policy = InfPolicy::line_only();
        let mut affinity: Option<AffinityPolicy> = None;
        for name in &addreg {
            let section = self.section(name).expect("looked up above");
            for line in &section.lines {
                let Some(reg) = RegLine::from_line(line) else {
                    continue;
                };
                if reg.subkey_is(MSI_PROPERTIES_SUBKEY) {
                    match reg.value_name.to_ascii_lowercase().as_str() {
                        "msisupported" => policy.msi_supported = reg.dword(line.line)? != 0,
                        "messagenumberlimit" => {
                            policy.message_number_limit = Some(reg.dword(line.line)?)
                        }
                        _ => {}
                    }
                } else if reg.subkey_is(AFFINITY_POLICY_SUBKEY) {
                    let a = affinity.get_or_insert_with(AffinityPolicy::default);
                    match reg.value_name.to_ascii_lowercase().as_str() {
                        "devicepolicy" => {
                            let value = reg.dword(line.line)?;
                            a.device_policy = Some(IrqDevicePolicy::from_dword(value).ok_or(
                                InfError::BadDevicePolicy {
                                    line: line.line,
                                    value,
                                },
                            )?);
                        }
                        "devicepriority" => a.device_priority = Some(reg.dword(line.line)?),
                        _ => {}
                    }
                }
            }
        }
        let misplaced = self.misplaced_keys(&addreg);
        Ok(InfInterruptSettings {
            policy,
            affinity,
            install_section: chosen.name.clone(),
            hw_section: hw.map(|s| s.name.clone()),
            hw_addreg_sections: addreg,
            misplaced,
        })
    }

    fn misplaced_keys(&self, counted: &[String]) -> Vec<MisplacedKey> {
        let mut out = Vec::new();
        for section in &self.sections {
            if counted
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&section.name))
            {
                continue;
            }
            for line in &section.lines {
                let Some(reg) = RegLine::from_line(line) else {
                    continue;
                };
                if reg.value_name.is_empty() {
                    continue;
                }
                if reg.subkey_is(MSI_PROPERTIES_SUBKEY) || reg.subkey_is(AFFINITY_POLICY_SUBKEY) {
                    out.push(MisplacedKey {
                        section: section.name.clone(),
                        line: line.line,
                        value_name: reg.value_name.to_string(),
                    });
                }
            }
        }
        out
    }
}

/// Names listed by every `AddReg = a, b` directive of a section.
fn addreg_targets(section: &InfSection) -> Vec<String> {
    section
        .lines
        .iter()
        .filter(|l| {
            l.key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case("AddReg"))
        })
        .flat_map(|l| l.fields.iter())
        .filter(|f| !f.is_empty())
        .cloned()
        .collect()
}

/// `reg-root, subkey, value-name, flags, value` as written in an AddReg section.
struct RegLine<'a> {
    subkey: &'a str,
    value_name: &'a str,
    flags: &'a str,
    value: &'a str,
}

impl<'a> RegLine<'a> {
    fn from_line(line: &'a InfLine) -> Option<Self> {
        if line.key.is_some() {
            return None;
        }
        let f = &line.fields;
        if !f.first()?.eq_ignore_ascii_case("HKR") {
            return None;
        }
        let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
        Some(Self {
            subkey: get(1),
            value_name: get(2),
            flags: get(3),
            value: get(4),
        })
    }

    fn subkey_is(&self, wanted: &str) -> bool {
        let norm = |s: &str| {
            s.trim_matches('\\')
                .replace("\\\\", "\\")
                .to_ascii_lowercase()
        };
        norm(self.subkey) == norm(wanted)
    }

    fn dword(&self, line: usize) -> Result<u32, InfError> {
        let flags = parse_number(self.flags).ok_or_else(|| InfError::BadNumber {
            line,
            text: self.flags.to_string(),
        })?;
        if flags != FLG_ADDREG_TYPE_DWORD {
            return Err(InfError::NotADword {
                line,
                value_name: self.value_name.to_string(),
                flags: self.flags.to_string(),
            });
        }
        parse_number(self.value).ok_or_else(|| InfError::BadNumber {
            line,
            text: self.value.to_string(),
        })
    }
}

/// INF numbers: decimal or `0x` hex.
fn parse_number(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// Drop a `;` comment that is not inside a quoted string.
fn strip_comment(raw: &str, line: usize) -> Result<&str, InfError> {
    let mut in_quote = false;
    for (i, c) in raw.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            ';' if !in_quote => return Ok(&raw[..i]),
            _ => {}
        }
    }
    if in_quote {
        return Err(InfError::UnterminatedQuote { line });
    }
    Ok(raw)
}

/// Split `key = a, "b, c", d` into key and unquoted fields.
fn split_entry(entry: &str, line: usize) -> Result<InfLine, InfError> {
    let mut key = None;
    let mut rest = entry;
    let mut in_quote = false;
    for (i, c) in entry.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '=' if !in_quote => {
                key = Some(unquote(entry[..i].trim()));
                rest = &entry[i + 1..];
                break;
            }
            _ => {}
        }
    }
    let mut fields = Vec::new();
    let mut field = String::new();
    in_quote = false;
    for c in rest.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                field.push(c);
            }
            ',' if !in_quote => fields.push(unquote(field.trim())),
            _ => field.push(c),
        }
        if c == ',' && !in_quote {
            field.clear();
        }
    }
    if in_quote {
        return Err(InfError::UnterminatedQuote { line });
    }
    fields.push(unquote(field.trim()));
    Ok(InfLine { line, key, fields })
}

/// Remove the quotes of every quoted run; `""` inside quotes is one quote character.
fn unquote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_quote = false;
    while let Some(c) = chars.next() {
        if c == '"' {
            if in_quote && chars.peek() == Some(&'"') {
                out.push('"');
                chars.next();
            } else {
                in_quote = !in_quote;
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Replace `%name%` with its `[Strings]` value; `%%` is a literal percent sign.
fn substitute(text: &str, table: &BTreeMap<String, String>) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        if name.is_empty() {
            out.push('%');
        } else if let Some(value) = table.get(&name.to_ascii_lowercase()) {
            out.push_str(value);
        } else {
            out.push('%');
            out.push_str(name);
            out.push('%');
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A sample INF for the virtio-blk reference driver (modern device id 0x1042), with the
/// interrupt-management keys where they belong: the `.HW` AddReg of the picked install section.
pub const VIRTIO_BLK_SAMPLE_INF: &str = r#"; virq reference virtio-blk miniport (sample used by tests and the simulated machine)
[Version]
Signature   = "$WINDOWS NT$"
Class       = SCSIAdapter
ClassGuid   = {4D36E97B-E325-11CE-BFC1-08002BE10318}
Provider    = %VirqMfg%
DriverVer   = 01/01/2024,1.0.0.0
CatalogFile = virqblk.cat

[Manufacturer]
%VirqMfg% = VirqModels, NTamd64, NTx86

[VirqModels.NTamd64]
%VirqBlk.DeviceDesc% = virqblk_inst, PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01, PCI\VEN_1AF4&DEV_1042

[VirqModels.NTx86]
%VirqBlk.DeviceDesc% = virqblk_inst, PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01, PCI\VEN_1AF4&DEV_1042

[virqblk_inst.NT]
CopyFiles = virqblk_files

[virqblk_inst.NT.HW]
AddReg = virqblk_pnp_addreg, virqblk_msi_addreg

[virqblk_inst.NT.Services]
AddService = virqblk, 0x00000002, virqblk_service

[virqblk_pnp_addreg]
HKR, , "UpperFilters", 0x00010008, ""

[virqblk_msi_addreg]
HKR, "Interrupt Management", 0x00000010
HKR, "Interrupt Management\MessageSignaledInterruptProperties", 0x00000010
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MSISupported, 0x00010001, 1
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MessageNumberLimit, 0x00010001, 2
HKR, "Interrupt Management\Affinity Policy", 0x00000010
HKR, "Interrupt Management\Affinity Policy", DevicePolicy, 0x00010001, 5

[virqblk_files]
virqblk.sys

[virqblk_service]
DisplayName   = %VirqBlk.SvcDesc%
ServiceType   = 1
StartType     = 0
ErrorControl  = 1
ServiceBinary = %12%\virqblk.sys
LoadOrderGroup = SCSI miniport

[DestinationDirs]
DefaultDestDir = 12

[Strings]
VirqMfg            = "virq project"
VirqBlk.DeviceDesc = "virq virtio-blk (modern) reference"
VirqBlk.SvcDesc    = "virq virtio-blk miniport"
"#;

/// The undecorated install section of [`VIRTIO_BLK_SAMPLE_INF`].
pub const VIRTIO_BLK_SAMPLE_INSTALL: &str = "virqblk_inst";
/// The modern virtio-blk hardware id the sample INF matches.
pub const VIRTIO_BLK_HARDWARE_ID: &str = r"PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_inf_grants_msi_with_limit_and_spread_affinity() {
        let inf = Inf::parse(VIRTIO_BLK_SAMPLE_INF).unwrap();
        let s = inf
            .interrupt_settings(VIRTIO_BLK_SAMPLE_INSTALL, InfArch::Amd64)
            .unwrap();
        assert_eq!(s.policy, InfPolicy::msi(Some(2)));
        assert_eq!(s.install_section, "virqblk_inst.NT");
        assert_eq!(s.hw_section.as_deref(), Some("virqblk_inst.NT.HW"));
        assert_eq!(
            s.hw_addreg_sections,
            vec!["virqblk_pnp_addreg", "virqblk_msi_addreg"]
        );
        assert_eq!(
            s.affinity.unwrap().device_policy,
            Some(IrqDevicePolicy::SpreadMessagesAcrossAllProcessors)
        );
        assert!(s.misplaced.is_empty(), "{:?}", s.misplaced);
    }

    #[test]
    fn hardware_id_leads_to_the_install_section() {
        let inf = Inf::parse(VIRTIO_BLK_SAMPLE_INF).unwrap();
        assert_eq!(
            inf.install_section_for_hardware_id(VIRTIO_BLK_HARDWARE_ID, InfArch::X86)
                .unwrap(),
            "virqblk_inst"
        );
        assert!(matches!(
            inf.install_section_for_hardware_id(r"PCI\VEN_8086&DEV_100E", InfArch::Amd64),
            Err(InfError::NoModelForHardwareId { .. })
        ));
    }

    #[test]
    fn strings_are_substituted() {
        let inf = Inf::parse(VIRTIO_BLK_SAMPLE_INF).unwrap();
        let models = inf.section("virqmodels.ntamd64").unwrap();
        assert_eq!(
            models.lines[0].key.as_deref(),
            Some("virq virtio-blk (modern) reference")
        );
    }

    /// Catalogue row 13: the keys are written from the install section's own AddReg
    /// (software key), not from the `.HW` section.
    #[test]
    fn keys_in_the_install_section_addreg_do_not_count() {
        let text = r#"
[drv_inst.NT]
CopyFiles = files
AddReg = msi_addreg

[drv_inst.NT.HW]
AddReg = other_addreg

[other_addreg]
HKR, , "Foo", 0x00010001, 1

[msi_addreg]
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MSISupported, 0x00010001, 1
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MessageNumberLimit, 0x00010001, 4
"#;
        let s = Inf::parse(text)
            .unwrap()
            .interrupt_settings("drv_inst", InfArch::Amd64)
            .unwrap();
        assert!(!s.policy.msi_supported);
        assert_eq!(s.policy.message_number_limit, None);
        let names: Vec<_> = s.misplaced.iter().map(|m| m.value_name.as_str()).collect();
        assert_eq!(names, ["MSISupported", "MessageNumberLimit"]);
        assert_eq!(s.misplaced[0].section, "msi_addreg");
        assert_eq!(s.misplaced[0].line, 13);
    }

    /// The keys sit under `[x.NT.HW]` but Windows picks `[x.NTamd64]`, whose `.HW` is empty.
    #[test]
    fn keys_under_the_wrong_decoration_do_not_count() {
        let text = r#"
[x.NTamd64]
CopyFiles = f
[x.NT]
CopyFiles = f
[x.NT.HW]
AddReg = msi
[msi]
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MSISupported, 0x00010001, 1
"#;
        let inf = Inf::parse(text).unwrap();
        let amd64 = inf.interrupt_settings("x", InfArch::Amd64).unwrap();
        assert_eq!(amd64.install_section, "x.NTamd64");
        assert_eq!(amd64.hw_section, None);
        assert!(!amd64.policy.msi_supported);
        assert_eq!(amd64.misplaced.len(), 1);
        let x86 = inf.interrupt_settings("x", InfArch::X86).unwrap();
        assert!(x86.policy.msi_supported);
    }

    #[test]
    fn registry_lines_written_directly_in_hw_section_do_not_count() {
        let text = r#"
[d.NT]
[d.NT.HW]
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MSISupported, 0x00010001, 1
"#;
        let s = Inf::parse(text)
            .unwrap()
            .interrupt_settings("d", InfArch::Amd64)
            .unwrap();
        assert!(!s.policy.msi_supported);
        assert_eq!(s.misplaced[0].section, "d.NT.HW");
    }

    #[test]
    fn msi_supported_zero_and_case_insensitivity_and_hex() {
        let text = r#"
[D.nt.hw]
addreg = R
[r] ; comment
hkr, "interrupt management\messagesignaledinterruptproperties", msisupported, 0x00010001, 0
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MessageNumberLimit, 0x00010001, 0x10
[d.NT]
"#;
        let p = InfPolicy::from_inf(text, "d", InfArch::Amd64).unwrap();
        assert_eq!(
            p,
            InfPolicy {
                msi_supported: false,
                message_number_limit: Some(16)
            }
        );
    }

    #[test]
    fn continuation_lines_and_comments_inside_quotes() {
        let text = "[d]\n[d.HW]\nAddReg = \\\n   r\n[r]\nHKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", \\\n  MSISupported, 0x00010001, 1 ; on\nHKR, \"a;b\", x, 0x00010001, 1\n";
        let s = Inf::parse(text)
            .unwrap()
            .interrupt_settings("d", InfArch::Amd64)
            .unwrap();
        assert!(s.policy.msi_supported);
        assert_eq!(s.hw_addreg_sections, vec!["r"]);
    }

    #[test]
    fn parse_errors_are_reported_with_lines() {
        assert_eq!(
            Inf::parse("[ok]\n[broken\n"),
            Err(InfError::UnterminatedSectionHeader { line: 2 })
        );
        assert_eq!(
            Inf::parse("stray = 1\n[s]\n"),
            Err(InfError::LineOutsideSection { line: 1 })
        );
        assert_eq!(
            Inf::parse("[s]\nkey = \"open\n"),
            Err(InfError::UnterminatedQuote { line: 2 })
        );
        let missing = "[d]\n[d.HW]\nAddReg = nowhere\n";
        assert_eq!(
            InfPolicy::from_inf(missing, "d", InfArch::Amd64),
            Err(InfError::MissingAddRegSection {
                section: "nowhere".into(),
                referenced_from: "d.HW".into()
            })
        );
        assert!(matches!(
            InfPolicy::from_inf("[e]\n", "d", InfArch::Amd64),
            Err(InfError::NoInstallSection { .. })
        ));
        let wrong_type = "[d]\n[d.HW]\nAddReg = r\n[r]\nHKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MSISupported, 0x00000000, \"1\"\n";
        assert!(matches!(
            InfPolicy::from_inf(wrong_type, "d", InfArch::Amd64),
            Err(InfError::NotADword { line: 5, .. })
        ));
        let bad_policy = "[d]\n[d.HW]\nAddReg = r\n[r]\nHKR, \"Interrupt Management\\Affinity Policy\", DevicePolicy, 0x00010001, 9\n";
        assert_eq!(
            InfPolicy::from_inf(bad_policy, "d", InfArch::Amd64),
            Err(InfError::BadDevicePolicy { line: 5, value: 9 })
        );
    }

    #[test]
    fn no_hw_section_means_line_only() {
        let p = InfPolicy::from_inf("[d.NT]\nCopyFiles = f\n", "d", InfArch::Amd64).unwrap();
        assert_eq!(p, InfPolicy::line_only());
        assert_eq!(InfPolicy::default(), InfPolicy::line_only());
    }
}
