//! Sprig functions that parse but are not implemented: dates, semver, URLs, crypto.

use super::*;

pub(super) const FUNCS: &[Func] = &[
    undef(&["ago", "duration", "durationRound"], ANY1, None),
    undef(&["unixEpoch"], &[Ty::Other("time.Time")], None),
    undef(&["toDate", "mustToDate"], S2, None),
    undef(
        &["mustDateModify", "must_date_modify"],
        &[TS, Ty::Other("time.Time")],
        None,
    ),
    undef(&["semver"], S1, None),
    undef(&["semverCompare"], S2, None),
    undef(&["urlParse"], S1, None),
    undef(&["urlJoin"], &[TM], None),
    undef(&["bcrypt", "genPrivateKey"], S1, None),
    undef(&["htpasswd", "encryptAES", "decryptAES"], S2, None),
    undef(&["derivePassword"], &[Ty::Uint32, TS, TS, TS, TS], None),
    undef(&["buildCustomCert"], S2, None),
    undef(&["genCA"], &[TS, TI], None),
    undef(&["genCAWithKey"], &[TS, TI, TS], None),
    undef(&["genSelfSignedCert"], &[TS, TL, TL, TI], None),
    undef(&["genSelfSignedCertWithKey"], &[TS, TL, TL, TI, TS], None),
    undef(
        &["genSignedCert"],
        &[TS, TL, TL, TI, Ty::Other("sprig.certificate")],
        None,
    ),
    undef(
        &["genSignedCertWithKey"],
        &[TS, TL, TL, TI, Ty::Other("sprig.certificate"), TS],
        None,
    ),
];
