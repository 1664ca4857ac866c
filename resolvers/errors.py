"""Expected failures: one exception type, stable codes, messages in fi/sv/en.

This is the one place that maps a failure to a code and a message; the
GraphQL layer turns a :class:`UserError` into a typed error result.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    INPUT = "input"  # the request itself is wrong: fix the field
    NOT_ALLOWED = "not_allowed"  # the caller may not do this now
    RATE_LIMITED = "rate_limited"


class Code(StrEnum):
    INVALID_EMAIL = "INVALID_EMAIL"
    INVALID_DATE = "INVALID_DATE"
    UNDER_AGE = "UNDER_AGE"
    INVALID_LANGUAGE = "INVALID_LANGUAGE"
    NAME_TOO_SHORT = "NAME_TOO_SHORT"
    NAME_TOO_LONG = "NAME_TOO_LONG"
    NAME_INVALID_CHARACTERS = "NAME_INVALID_CHARACTERS"
    NAME_RESERVED = "NAME_RESERVED"
    NAME_TAKEN = "NAME_TAKEN"
    DISPLAY_NAME_IDENTIFYING = "DISPLAY_NAME_IDENTIFYING"
    PASSWORD_TOO_SHORT = "PASSWORD_TOO_SHORT"  # noqa: S105
    PASSWORD_TOO_LONG = "PASSWORD_TOO_LONG"  # noqa: S105
    PASSWORD_TOO_COMMON = "PASSWORD_TOO_COMMON"  # noqa: S105
    PASSWORD_LIKE_NAME = "PASSWORD_LIKE_NAME"  # noqa: S105
    RULES_NOT_CURRENT = "RULES_NOT_CURRENT"
    RULES_NOT_ACCEPTED = "RULES_NOT_ACCEPTED"
    RULES_TEXT_MISSING = "RULES_TEXT_MISSING"
    TOKEN_INVALID = "TOKEN_INVALID"  # noqa: S105
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    WRONG_PASSWORD = "WRONG_PASSWORD"  # noqa: S105
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    NOT_FOUND = "NOT_FOUND"
    NOTHING_TO_CHANGE = "NOTHING_TO_CHANGE"
    REASON_REQUIRED = "REASON_REQUIRED"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    INVALID_ROLE = "INVALID_ROLE"
    TEXT_EMPTY = "TEXT_EMPTY"
    REPLY_TOO_DEEP = "REPLY_TOO_DEEP"
    EDIT_WINDOW_CLOSED = "EDIT_WINDOW_CLOSED"
    NOT_AUTHOR = "NOT_AUTHOR"
    POST_REMOVED = "POST_REMOVED"
    TOO_MANY_POSTS = "TOO_MANY_POSTS"
    TOO_MANY_REACTIONS = "TOO_MANY_REACTIONS"
    STAFF_STARTS_THREADS = "STAFF_STARTS_THREADS"
    CLIENT_KEY_INVALID = "CLIENT_KEY_INVALID"
    CANNOT_REPORT_OWN = "CANNOT_REPORT_OWN"
    ALREADY_REPORTED = "ALREADY_REPORTED"
    TOO_MANY_REPORTS = "TOO_MANY_REPORTS"
    CATEGORY_REQUIRED = "CATEGORY_REQUIRED"
    DECISION_NOT_APPLICABLE = "DECISION_NOT_APPLICABLE"
    PERSONAL_IDENTITY_CODE_IN_TEXT = "PERSONAL_IDENTITY_CODE_IN_TEXT"
    PHONE_NUMBER_IN_TEXT = "PHONE_NUMBER_IN_TEXT"
    EMAIL_ADDRESS_IN_TEXT = "EMAIL_ADDRESS_IN_TEXT"
    IBAN_IN_TEXT = "IBAN_IN_TEXT"
    BANNED_WORDS = "BANNED_WORDS"
    REPEATED_POST = "REPEATED_POST"
    THREAD_LOCKED = "THREAD_LOCKED"
    SUSPENDED = "SUSPENDED"
    WARNING_NOT_ACKNOWLEDGED = "WARNING_NOT_ACKNOWLEDGED"
    INVALID_TIME = "INVALID_TIME"
    NOT_A_MEMBER = "NOT_A_MEMBER"
    WORD_INVALID = "WORD_INVALID"
    ATTRIBUTE_INVALID = "ATTRIBUTE_INVALID"
    ANSWER_INVALID = "ANSWER_INVALID"
    ANSWER_REQUIRED = "ANSWER_REQUIRED"
    SEGMENT_INVALID = "SEGMENT_INVALID"
    STUDY_INVALID = "STUDY_INVALID"
    STUDY_NOT_DRAFT = "STUDY_NOT_DRAFT"
    STUDY_NOT_OPEN = "STUDY_NOT_OPEN"
    STUDY_CLOSED = "STUDY_CLOSED"
    ALREADY_SUBMITTED = "ALREADY_SUBMITTED"
    INVITATION_DECLINED = "INVITATION_DECLINED"
    NO_ELIGIBLE = "NO_ELIGIBLE"
    CLAIM_EXPIRED = "CLAIM_EXPIRED"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"
    LOCK_NOT_ALLOWED = "LOCK_NOT_ALLOWED"


KIND = {
    Code.RULES_NOT_ACCEPTED: ErrorKind.NOT_ALLOWED,
    Code.INVALID_CREDENTIALS: ErrorKind.NOT_ALLOWED,
    Code.NOT_FOUND: ErrorKind.NOT_ALLOWED,
    Code.TOO_MANY_ATTEMPTS: ErrorKind.RATE_LIMITED,
    Code.TOO_MANY_POSTS: ErrorKind.RATE_LIMITED,
    Code.TOO_MANY_REACTIONS: ErrorKind.RATE_LIMITED,
    Code.EDIT_WINDOW_CLOSED: ErrorKind.NOT_ALLOWED,
    Code.NOT_AUTHOR: ErrorKind.NOT_ALLOWED,
    Code.POST_REMOVED: ErrorKind.NOT_ALLOWED,
    Code.STAFF_STARTS_THREADS: ErrorKind.NOT_ALLOWED,
    Code.CANNOT_REPORT_OWN: ErrorKind.NOT_ALLOWED,
    Code.ALREADY_REPORTED: ErrorKind.NOT_ALLOWED,
    Code.TOO_MANY_REPORTS: ErrorKind.RATE_LIMITED,
    Code.DECISION_NOT_APPLICABLE: ErrorKind.NOT_ALLOWED,
    Code.THREAD_LOCKED: ErrorKind.NOT_ALLOWED,
    Code.SUSPENDED: ErrorKind.NOT_ALLOWED,
    Code.WARNING_NOT_ACKNOWLEDGED: ErrorKind.NOT_ALLOWED,
    Code.NOT_A_MEMBER: ErrorKind.NOT_ALLOWED,
    Code.ACCOUNT_LOCKED: ErrorKind.NOT_ALLOWED,
    Code.LOCK_NOT_ALLOWED: ErrorKind.NOT_ALLOWED,
    Code.STUDY_NOT_DRAFT: ErrorKind.NOT_ALLOWED,
    Code.STUDY_NOT_OPEN: ErrorKind.NOT_ALLOWED,
    Code.STUDY_CLOSED: ErrorKind.NOT_ALLOWED,
    Code.ALREADY_SUBMITTED: ErrorKind.NOT_ALLOWED,
    Code.INVITATION_DECLINED: ErrorKind.NOT_ALLOWED,
    Code.NO_ELIGIBLE: ErrorKind.NOT_ALLOWED,
    Code.CLAIM_EXPIRED: ErrorKind.NOT_ALLOWED,
}

MESSAGES: dict[Code, dict[str, str]] = {
    Code.INVALID_EMAIL: {
        "en": "This is not a valid email address.",
        "fi": "Sähköpostiosoite ei kelpaa.",
        "sv": "E-postadressen är inte giltig.",
    },
    Code.INVALID_DATE: {
        "en": "The date is not valid.",
        "fi": "Päivämäärä ei kelpaa.",
        "sv": "Datumet är inte giltigt.",
    },
    Code.UNDER_AGE: {
        "en": "Members must be at least 16 years old.",
        "fi": "Jäsenten on oltava vähintään 16-vuotiaita.",
        "sv": "Medlemmar måste vara minst 16 år.",
    },
    Code.INVALID_LANGUAGE: {
        "en": "Choose Finnish, Swedish or English.",
        "fi": "Valitse suomi, ruotsi tai englanti.",
        "sv": "Välj finska, svenska eller engelska.",
    },
    Code.NAME_TOO_SHORT: {
        "en": "The name must be at least {min} characters.",
        "fi": "Nimessä on oltava vähintään {min} merkkiä.",
        "sv": "Namnet måste ha minst {min} tecken.",
    },
    Code.NAME_TOO_LONG: {
        "en": "The name may have at most {max} characters.",
        "fi": "Nimessä saa olla enintään {max} merkkiä.",
        "sv": "Namnet får ha högst {max} tecken.",
    },
    Code.NAME_INVALID_CHARACTERS: {
        "en": "The name contains characters that are not allowed.",
        "fi": "Nimessä on merkkejä, jotka eivät ole sallittuja.",
        "sv": "Namnet innehåller otillåtna tecken.",
    },
    Code.NAME_RESERVED: {
        "en": "This name is reserved.",
        "fi": "Tämä nimi on varattu.",
        "sv": "Det här namnet är reserverat.",
    },
    Code.NAME_TAKEN: {
        "en": "This name is already taken.",
        "fi": "Nimi on jo käytössä.",
        "sv": "Namnet är redan upptaget.",
    },
    Code.DISPLAY_NAME_IDENTIFYING: {
        "en": "Your public name may not be your login name or the start of your email address.",
        "fi": "Julkinen nimi ei saa olla käyttäjätunnuksesi eikä sähköpostiosoitteesi alku.",
        "sv": "Ditt offentliga namn får inte vara ditt användarnamn eller början av din e-post.",
    },
    Code.PASSWORD_TOO_SHORT: {
        "en": "The password must be at least {min} characters.",
        "fi": "Salasanassa on oltava vähintään {min} merkkiä.",
        "sv": "Lösenordet måste ha minst {min} tecken.",
    },
    Code.PASSWORD_TOO_LONG: {
        "en": "The password may have at most {max} characters.",
        "fi": "Salasanassa saa olla enintään {max} merkkiä.",
        "sv": "Lösenordet får ha högst {max} tecken.",
    },
    Code.PASSWORD_TOO_COMMON: {
        "en": "This password is too common. Choose another.",
        "fi": "Salasana on liian yleinen. Valitse toinen.",
        "sv": "Lösenordet är för vanligt. Välj ett annat.",
    },
    Code.PASSWORD_LIKE_NAME: {
        "en": "The password may not contain your name or email address.",
        "fi": "Salasana ei saa sisältää nimeäsi tai sähköpostiosoitettasi.",
        "sv": "Lösenordet får inte innehålla ditt namn eller din e-postadress.",
    },
    Code.RULES_NOT_CURRENT: {
        "en": "Please accept the current version of the community rules.",
        "fi": "Hyväksy yhteisön sääntöjen voimassa oleva versio.",
        "sv": "Godkänn den gällande versionen av gemenskapens regler.",
    },
    Code.RULES_NOT_ACCEPTED: {
        "en": "The community rules have changed. Accept them to continue writing.",
        "fi": "Yhteisön säännöt ovat muuttuneet. Hyväksy ne jatkaaksesi kirjoittamista.",
        "sv": "Gemenskapens regler har ändrats. Godkänn dem för att fortsätta skriva.",
    },
    Code.RULES_TEXT_MISSING: {
        "en": "The rules need a text in Finnish, Swedish and English.",
        "fi": "Säännöt tarvitsevat tekstin suomeksi, ruotsiksi ja englanniksi.",
        "sv": "Reglerna behöver en text på finska, svenska och engelska.",
    },
    Code.TOKEN_INVALID: {
        "en": "This link is not valid or has expired.",
        "fi": "Linkki ei ole voimassa.",
        "sv": "Länken är inte giltig.",
    },
    Code.INVALID_CREDENTIALS: {
        "en": "Sign-in failed. Check your name and password.",
        "fi": "Kirjautuminen epäonnistui. Tarkista tunnus ja salasana.",
        "sv": "Inloggningen misslyckades. Kontrollera namn och lösenord.",
    },
    Code.WRONG_PASSWORD: {
        "en": "The password is not correct.",
        "fi": "Salasana on väärä.",
        "sv": "Lösenordet är fel.",
    },
    Code.TOO_MANY_ATTEMPTS: {
        "en": "Too many attempts. Try again in {retry_after} seconds.",
        "fi": "Liian monta yritystä. Yritä uudelleen {retry_after} sekunnin kuluttua.",
        "sv": "För många försök. Försök igen om {retry_after} sekunder.",
    },
    Code.NOT_FOUND: {
        "en": "Not found.",
        "fi": "Ei löytynyt.",
        "sv": "Hittades inte.",
    },
    Code.NOTHING_TO_CHANGE: {
        "en": "Nothing to change.",
        "fi": "Ei muutettavaa.",
        "sv": "Inget att ändra.",
    },
    Code.REASON_REQUIRED: {
        "en": "Give a reason of at least {min} characters.",
        "fi": "Anna vähintään {min} merkin perustelu.",
        "sv": "Ange en motivering på minst {min} tecken.",
    },
    Code.TEXT_TOO_LONG: {
        "en": "The text may have at most {max} characters.",
        "fi": "Tekstissä saa olla enintään {max} merkkiä.",
        "sv": "Texten får ha högst {max} tecken.",
    },
    Code.INVALID_ROLE: {
        "en": "Unknown role.",
        "fi": "Tuntematon rooli.",
        "sv": "Okänd roll.",
    },
    Code.TEXT_EMPTY: {
        "en": "Write something first.",
        "fi": "Kirjoita ensin jotain.",
        "sv": "Skriv något först.",
    },
    Code.REPLY_TOO_DEEP: {
        "en": "Replies can nest at most {max} levels. Reply higher up instead.",
        "fi": "Vastauksia voi ketjuttaa enintään {max} tasoa. Vastaa ylemmälle tasolle.",
        "sv": "Svar kan kedjas i högst {max} nivåer. Svara högre upp i stället.",
    },
    Code.EDIT_WINDOW_CLOSED: {
        "en": "Posts can be edited for {minutes} minutes after posting.",
        "fi": "Viestiä voi muokata {minutes} minuutin ajan lähettämisestä.",
        "sv": "Inlägg kan redigeras i {minutes} minuter efter att de skickats.",
    },
    Code.NOT_AUTHOR: {
        "en": "Only the author can do this.",
        "fi": "Vain kirjoittaja voi tehdä tämän.",
        "sv": "Endast skribenten kan göra detta.",
    },
    Code.POST_REMOVED: {
        "en": "This post has been removed.",
        "fi": "Tämä viesti on poistettu.",
        "sv": "Det här inlägget har tagits bort.",
    },
    Code.TOO_MANY_POSTS: {
        "en": "You are posting too fast. Try again in {retry_after} seconds.",
        "fi": "Kirjoitat liian nopeasti. Yritä uudelleen {retry_after} sekunnin kuluttua.",
        "sv": "Du skriver för snabbt. Försök igen om {retry_after} sekunder.",
    },
    Code.TOO_MANY_REACTIONS: {
        "en": "You are reacting too fast. Try again in {retry_after} seconds.",
        "fi": "Reagoit liian nopeasti. Yritä uudelleen {retry_after} sekunnin kuluttua.",
        "sv": "Du reagerar för snabbt. Försök igen om {retry_after} sekunder.",
    },
    Code.STAFF_STARTS_THREADS: {
        "en": "In this area only staff start new threads.",
        "fi": "Tällä alueella vain ylläpito aloittaa uusia keskusteluja.",
        "sv": "I det här området startar endast personalen nya trådar.",
    },
    Code.CLIENT_KEY_INVALID: {
        "en": "The client key must be 8 to 64 letters, digits, '-' or '_'.",
        "fi": "Asiakasavaimessa on oltava 8–64 kirjainta, numeroa, '-' tai '_'.",
        "sv": "Klientnyckeln måste ha 8–64 bokstäver, siffror, '-' eller '_'.",
    },
    Code.CANNOT_REPORT_OWN: {
        "en": "You cannot report your own post.",
        "fi": "Omaa viestiä ei voi ilmoittaa.",
        "sv": "Du kan inte anmäla ditt eget inlägg.",
    },
    Code.ALREADY_REPORTED: {
        "en": "You have already reported this post.",
        "fi": "Olet jo ilmoittanut tästä viestistä.",
        "sv": "Du har redan anmält det här inlägget.",
    },
    Code.TOO_MANY_REPORTS: {
        "en": "You have sent many reports today. Try again later.",
        "fi": "Olet lähettänyt tänään paljon ilmoituksia. Yritä myöhemmin uudelleen.",
        "sv": "Du har skickat många anmälningar i dag. Försök igen senare.",
    },
    Code.CATEGORY_REQUIRED: {
        "en": "Choose which rule the post breaks.",
        "fi": "Valitse, mitä sääntöä viesti rikkoo.",
        "sv": "Välj vilken regel inlägget bryter mot.",
    },
    Code.DECISION_NOT_APPLICABLE: {
        "en": "This decision does not apply to the post in its current state.",
        "fi": "Tätä päätöstä ei voi tehdä viestin nykyisessä tilassa.",
        "sv": "Beslutet gäller inte inlägget i dess nuvarande läge.",
    },
    Code.PERSONAL_IDENTITY_CODE_IN_TEXT: {
        "en": "The text contains a personal identity code. Remove it: personal data "
        "may not be shared in the community.",
        "fi": "Tekstissä on henkilötunnus. Poista se: henkilötietoja ei saa jakaa yhteisössä.",
        "sv": "Texten innehåller en personbeteckning. Ta bort den: personuppgifter "
        "får inte delas i gemenskapen.",
    },
    Code.PHONE_NUMBER_IN_TEXT: {
        "en": "The text contains a phone number. Remove it: personal data "
        "may not be shared in the community.",
        "fi": "Tekstissä on puhelinnumero. Poista se: henkilötietoja ei saa jakaa yhteisössä.",
        "sv": "Texten innehåller ett telefonnummer. Ta bort det: personuppgifter "
        "får inte delas i gemenskapen.",
    },
    Code.EMAIL_ADDRESS_IN_TEXT: {
        "en": "The text contains an email address. Remove it: personal data "
        "may not be shared in the community.",
        "fi": "Tekstissä on sähköpostiosoite. Poista se: henkilötietoja ei saa jakaa yhteisössä.",
        "sv": "Texten innehåller en e-postadress. Ta bort den: personuppgifter "
        "får inte delas i gemenskapen.",
    },
    Code.IBAN_IN_TEXT: {
        "en": "The text contains a bank account number (IBAN). Remove it: personal data "
        "may not be shared in the community.",
        "fi": "Tekstissä on tilinumero (IBAN). Poista se: henkilötietoja ei saa jakaa yhteisössä.",
        "sv": "Texten innehåller ett kontonummer (IBAN). Ta bort det: personuppgifter "
        "får inte delas i gemenskapen.",
    },
    Code.BANNED_WORDS: {
        "en": "The text contains words that break the community rules. Rephrase it.",
        "fi": "Tekstissä on yhteisön sääntöjen vastaisia sanoja. Muotoile se toisin.",
        "sv": "Texten innehåller ord som bryter mot gemenskapens regler. Formulera om den.",
    },
    Code.REPEATED_POST: {
        "en": "You have already posted this text. Write something new instead.",
        "fi": "Olet jo lähettänyt tämän tekstin. Kirjoita jotain uutta.",
        "sv": "Du har redan skickat den här texten. Skriv något nytt i stället.",
    },
    Code.THREAD_LOCKED: {
        "en": "This thread is locked: no new posts.",
        "fi": "Tämä keskustelu on lukittu: uusia viestejä ei voi lähettää.",
        "sv": "Tråden är låst: inga nya inlägg.",
    },
    Code.SUSPENDED: {
        "en": "Your writing rights are suspended until {until}. You can still read.",
        "fi": "Kirjoitusoikeutesi on keskeytetty {until} asti. Voit yhä lukea.",
        "sv": "Din skrivrätt är avstängd till {until}. Du kan fortfarande läsa.",
    },
    Code.WARNING_NOT_ACKNOWLEDGED: {
        "en": "A moderator has warned you. Read and acknowledge the warning to continue.",
        "fi": "Moderaattori on antanut sinulle varoituksen. Lue ja kuittaa se jatkaaksesi.",
        "sv": "En moderator har gett dig en varning. Läs och kvittera den för att fortsätta.",
    },
    Code.INVALID_TIME: {
        "en": "The time must be in the future.",
        "fi": "Ajan on oltava tulevaisuudessa.",
        "sv": "Tiden måste vara i framtiden.",
    },
    Code.NOT_A_MEMBER: {
        "en": "This action applies only to active members.",
        "fi": "Toiminto koskee vain aktiivisia jäseniä.",
        "sv": "Åtgärden gäller endast aktiva medlemmar.",
    },
    Code.WORD_INVALID: {
        "en": "Give a word or phrase of 2 to 100 characters.",
        "fi": "Anna 2–100 merkin sana tai ilmaus.",
        "sv": "Ange ett ord eller uttryck på 2–100 tecken.",
    },
    Code.ATTRIBUTE_INVALID: {
        "en": "The attribute definition is not valid: check the key, labels and options.",
        "fi": "Ominaisuuden määrittely ei kelpaa: tarkista tunniste, nimet ja vaihtoehdot.",
        "sv": "Egenskapens definition är inte giltig: kontrollera nyckel, namn och alternativ.",
    },
    Code.ANSWER_INVALID: {
        "en": "This answer does not fit the question.",
        "fi": "Vastaus ei sovi kysymykseen.",
        "sv": "Svaret passar inte frågan.",
    },
    Code.ANSWER_REQUIRED: {
        "en": "Answer every required question before submitting.",
        "fi": "Vastaa kaikkiin pakollisiin kysymyksiin ennen lähettämistä.",
        "sv": "Svara på alla obligatoriska frågor innan du skickar.",
    },
    Code.SEGMENT_INVALID: {
        "en": "The segment rule is not valid.",
        "fi": "Kohderyhmän sääntö ei kelpaa.",
        "sv": "Segmentets regel är inte giltig.",
    },
    Code.STUDY_INVALID: {
        "en": "The study is not complete or not valid: {reason}.",
        "fi": "Tutkimus on puutteellinen tai virheellinen: {reason}.",
        "sv": "Studien är ofullständig eller ogiltig: {reason}.",
    },
    Code.STUDY_NOT_DRAFT: {
        "en": "Only a study that has not been launched can be changed.",
        "fi": "Vain käynnistämätöntä tutkimusta voi muuttaa.",
        "sv": "Endast en studie som inte har startats kan ändras.",
    },
    Code.STUDY_NOT_OPEN: {
        "en": "This study is not open yet.",
        "fi": "Tämä tutkimus ei ole vielä avoinna.",
        "sv": "Studien är inte öppen ännu.",
    },
    Code.STUDY_CLOSED: {
        "en": "This study has closed.",
        "fi": "Tämä tutkimus on päättynyt.",
        "sv": "Studien har avslutats.",
    },
    Code.ALREADY_SUBMITTED: {
        "en": "You have already submitted your answers.",
        "fi": "Olet jo lähettänyt vastauksesi.",
        "sv": "Du har redan skickat dina svar.",
    },
    Code.INVITATION_DECLINED: {
        "en": "You have declined this invitation.",
        "fi": "Olet kieltäytynyt tästä kutsusta.",
        "sv": "Du har tackat nej till inbjudan.",
    },
    Code.NO_ELIGIBLE: {
        "en": "Nobody is eligible for the draw.",
        "fi": "Arvontaan ei ole osallistujia.",
        "sv": "Ingen deltar i dragningen.",
    },
    Code.CLAIM_EXPIRED: {
        "en": "The time to claim this reward has passed.",
        "fi": "Palkinnon lunastusaika on päättynyt.",
        "sv": "Tiden för att lösa in belöningen har gått ut.",
    },
}

MESSAGES[Code.ACCOUNT_LOCKED] = {
    "en": "This account is locked because of suspected misuse. We have emailed you a link "
    "to set a new password, which unlocks it.",
    "fi": "Tili on lukittu epäillyn väärinkäytön vuoksi. Lähetimme sähköpostiisi linkin "
    "uuden salasanan asettamiseen, joka avaa lukituksen.",
    "sv": "Kontot är låst på grund av misstänkt missbruk. Vi har skickat en länk till din "
    "e-post för att välja ett nytt lösenord, vilket låser upp kontot.",
}

MESSAGES[Code.LOCK_NOT_ALLOWED] = {
    "en": "Only admins lock accounts in this community.",
    "fi": "Tässä yhteisössä vain ylläpitäjät lukitsevat tilejä.",
    "sv": "I den här gemenskapen låser endast administratörer konton.",
}

PERSONAL_DATA_CODES = {
    "personal_identity_code": Code.PERSONAL_IDENTITY_CODE_IN_TEXT,
    "phone_number": Code.PHONE_NUMBER_IN_TEXT,
    "email_address": Code.EMAIL_ADDRESS_IN_TEXT,
    "iban": Code.IBAN_IN_TEXT,
}


class UserError(Exception):
    """An expected failure the client can act on."""

    def __init__(
        self,
        code: Code,
        field: str | None = None,
        retry_after: int | None = None,
        **params: object,
    ) -> None:
        super().__init__(code.value)
        self.code = code
        self.field = field
        self.retry_after = retry_after
        self.params = dict(params)
        # Set when the message must be in the account's language, not the request's.
        self.language: str | None = None
        if retry_after is not None:
            self.params["retry_after"] = retry_after

    @property
    def kind(self) -> ErrorKind:
        return KIND.get(self.code, ErrorKind.INPUT)

    def message(self, language: str) -> str:
        texts = MESSAGES[self.code]
        return texts.get(language, texts["en"]).format(**self.params)
