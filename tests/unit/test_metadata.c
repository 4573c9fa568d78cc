/* test_metadata.c: the rules of token metadata keys and values, above all
 * that nothing reading as card data gets in: card numbers in every spelling
 * the vault's scanner knows, security codes after a security-code key, keys
 * named like a security code. Each accepted case has a refused twin. */
#include "cardvault/metadata.h"

#include <string.h>

#include "check.h"

static cv_status key(const char *k)
{
    return cv_metadata_check_key(k, strlen(k));
}

static cv_status value(const char *v)
{
    return cv_metadata_check_value(v, strlen(v));
}

static void keys_of_the_allowed_alphabet_pass(void)
{
    CHECK_EQ_INT(key("customer_id"), CV_OK);
    CHECK_EQ_INT(key("order.ref-2"), CV_OK);
    CHECK_EQ_INT(key("A"), CV_OK);
    CHECK_EQ_INT(key("0123456789012345678901234567890123456789"), CV_OK); /* 40, not Luhn */
}

static void keys_outside_the_rules_are_invalid(void)
{
    CHECK_EQ_INT(key(""), CV_ERR_INVALID_METADATA);
    CHECK_EQ_INT(key("a b"), CV_ERR_INVALID_METADATA);
    CHECK_EQ_INT(key("a/b"), CV_ERR_INVALID_METADATA);
    CHECK_EQ_INT(key("caf\xc3\xa9"), CV_ERR_INVALID_METADATA);
    CHECK_EQ_INT(key("01234567890123456789012345678901234567890"), CV_ERR_INVALID_METADATA);
    CHECK_EQ_INT(cv_metadata_check_key("a\0b", 3), CV_ERR_INVALID_METADATA);
}

static void keys_named_like_a_security_code_are_card_data(void)
{
    const char *names[] = {"cvc", "CVV", "cvv2", "security_code", "card_cvv", "security-code"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        CHECK_EQ_INT(key(names[i]), CV_ERR_METADATA_CARD_DATA);
    CHECK_EQ_INT(key("4242424242424242"), CV_ERR_METADATA_CARD_DATA);
    CHECK_EQ_INT(key("pan-4242-4242-4242-4242"), CV_ERR_METADATA_CARD_DATA);
}

static void ordinary_values_pass(void)
{
    CHECK_EQ_INT(value(""), CV_OK);
    CHECK_EQ_INT(value("cus_8812"), CV_OK);
    CHECK_EQ_INT(value("order 12345678"), CV_OK);   /* 8 digits: no card number */
    CHECK_EQ_INT(value("4242424242424241"), CV_OK); /* 16 digits failing Luhn */
    CHECK_EQ_INT(value("Stra\xc3\x9f"
                       "e 12"),
                 CV_OK);
    CHECK_EQ_INT(value("code 123"), CV_OK); /* 3 digits after a key not named like a code */
}

static void card_numbers_in_values_are_card_data(void)
{
    const char *pans[] = {
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "card: 5555555555554444 exp 12/30",
        "378282246310005",          /* Amex, 15 */
        "3782 822463 10005",        /* Amex 4-6-5 */
        "6011111111111117",         /* Discover */
        "\\u0034242424242424242",   /* a JSON escape, as text */
        "%34%32%34%32424242424242", /* URL escapes */
        "\xef\xbc\x94\xef\xbc\x92"
        "42424242424242", /* full-width digits */
        "123456789015",   /* 12 digits passing Luhn, no issuer */
    };
    for (size_t i = 0; i < sizeof(pans) / sizeof(pans[0]); i++) {
        cv_status st = value(pans[i]);
        if (st != CV_ERR_METADATA_CARD_DATA)
            fprintf(stderr, "  case %zu accepted\n", i);
        CHECK_EQ_INT(st, CV_ERR_METADATA_CARD_DATA);
    }
}

static void security_codes_after_their_key_are_card_data(void)
{
    CHECK_EQ_INT(value("cvv: 123"), CV_ERR_METADATA_CARD_DATA);
    CHECK_EQ_INT(value("cvc=1234"), CV_ERR_METADATA_CARD_DATA);
    CHECK_EQ_INT(value("{\"cvv\":\"123\"}"), CV_ERR_METADATA_CARD_DATA);
}

static void values_over_the_limit_or_with_nul_are_invalid(void)
{
    char v[CV_META_VALUE_MAX + 2];
    memset(v, 'x', sizeof(v));
    CHECK_EQ_INT(cv_metadata_check_value(v, CV_META_VALUE_MAX), CV_OK);
    CHECK_EQ_INT(cv_metadata_check_value(v, CV_META_VALUE_MAX + 1), CV_ERR_INVALID_METADATA);
    CHECK_EQ_INT(cv_metadata_check_value("a\0b", 3), CV_ERR_INVALID_METADATA);
}

int main(void)
{
    RUN(keys_of_the_allowed_alphabet_pass);
    RUN(keys_outside_the_rules_are_invalid);
    RUN(keys_named_like_a_security_code_are_card_data);
    RUN(ordinary_values_pass);
    RUN(card_numbers_in_values_are_card_data);
    RUN(security_codes_after_their_key_are_card_data);
    RUN(values_over_the_limit_or_with_nul_are_invalid);
    return check_summary("metadata");
}
