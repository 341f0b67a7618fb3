# E-maily, čeština. Stejné klíče jako v každém server/locales/<lang>/mail.ftl.

mail-subject-receipt = Podání přijato: { $id }
mail-subject-answer = Odpověď úřadu k podání { $id }
mail-subject-overdue = Předání úřadu se zpožďuje: podání { $id }
mail-subject-preregistration-digest = Předběžné registrace čekající na oznámení o nástupu
mail-subject-invitation = Váš přístup do portálu ivan
mail-subject-phone-alert = Přístup z telefonu byl zablokován
mail-subject-certificate-expiry = Platnost podpisového certifikátu brzy skončí
mail-frame =
    { $detail }

    Identifikátor zprávy: { $id }
    Podrobnosti: GET /api/v1/submissions/{ $id }

    Tuto zprávu odeslal ivan; podepsané potvrzení o přijetí a odpovědi úřadu jsou
    dostupné přes API.
mail-receipt = Vaše podání { $type } bylo přijato pod číslem { $number } dne { $at }. { $when }
mail-receipt-cancellable = Zrušit ho můžete do { $until }.
mail-receipt-forwarding = Předává se úřadu.
mail-answer = Úřad odpověděl: { $state } (počet dokumentů odpovědi: { $count }).
mail-overdue = Podání se k úřadu nedostalo ve slíbené lhůtě; ivan to zkouší dál a doručí ho, jakmile úřad odpoví.
mail-digest-intro = Počet předběžných registrací z telefonů po lhůtě bez oznámení o nástupu: { $count }
mail-digest-line = - { $number } { $person }: { $given } { $surname }, { $kind } k { $effective }, lhůta { $due } (GET /api/v1/preregistrations/{ $id }/registration-form)
mail-digest-outro = Ke každé podejte oznámení o nástupu; spárují se automaticky.
mail-cert-expiry = Platnost podpisového certifikátu { $subject } (SHA-256 { $fingerprint }) registrovaného pro Vaše podání skončí { $expires }, za { $days } d. Nechte si včas zaregistrovat jeho nástupce (požádejte provozovatele): podání podepsaná certifikátem s prošlou platností se odmítají.
mail-phone-locked = Přístup z telefonu { $id } ({ $phone }) byl zablokován po { $failures } chybných PIN během { $hours } h, což vypadá jako hádání PIN. Jeho relace skončily. Ověřte to u uživatele telefonu a poté vygenerujte nový PIN (POST /api/v1/phone-accesses/{ $id }/pin), který přístup odblokuje.
mail-invited-employer = portálu zaměstnavatelů ivan jako { $role }
mail-invited-officer = portálu ivan jako pracovník kontroly organizace { $organisation }
mail-invitation-body =
    Zveme Vás do { $invited_as } ({ $email }).

    Otevřete tento odkaz na zařízení, ve kterém bude uložen Váš přístupový klíč, nejpozději { $expires }:

    { $link }

    Odkaz funguje pouze jednou. Pokud jste tuto zprávu neočekávali, ignorujte ji.
