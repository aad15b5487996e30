//! End-to-end checks of the server over HTTP: response shapes, errors, faults and request
//! counts, and that the google-sheets4 client the product uses reads them.

use serde_json::{json, Value};

use super::*;

async fn start() -> RunningSheetsServer {
    let server = SheetsServer::from_dir(fixtures_dir()).expect("fixtures load");
    server.put(
        Spreadsheet::new("tabs")
            .with_title("Tabs")
            .with_tab(Tab::from_input("Sheet1", 0, [["a", "b"], ["1", "2"]]))
            .with_tab(Tab::from_input("My Tab", 1234, vec![vec!["x", "", "z"], vec![], vec!["", "2024-01-05"]]))
            .with_tab(Tab::new("Empty", 99, Vec::new())),
    );
    server.spawn().await.expect("server starts")
}

async fn get(base: &str, path_and_query: &str) -> (u16, String, Value) {
    let response = reqwest::get(format!("{base}{path_and_query}")).await.expect("request succeeds");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test]
async fn values_get_returns_typed_ragged_rows() {
    let s = start().await;
    let base = s.base_url();
    let (status, ct, body) = get(
        &base,
        "v4/spreadsheets/example_sales/values/Sheet1!A1:G4?valueRenderOption=UNFORMATTED_VALUE&dateTimeRenderOption=SERIAL_NUMBER",
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/json; charset=UTF-8"));
    assert_eq!(
        body,
        json!({
            "range": "Sheet1!A1:G4",
            "majorDimension": "ROWS",
            "values": [
                ["order_id", "customer", "amount", "paid", "order_date", "shipped_at", "notes"],
                [1001, "Alice Martin", 120.5, true, 45296, 45297.395833333336, "first order"],
                [1002, "Zoë Dubois", 75, false, 45298],
                [1003, "東京 Trading Co.", 1999.99, true, 45300, 45301.58692129629, "bulk, priority"],
            ]
        })
    );

    // Formatted values are the displayed strings.
    let (_, _, body) = get(&base, "v4/spreadsheets/example_sales/values/Sheet1!B3:E3").await;
    assert_eq!(body["values"], json!([["Zoë Dubois", "75.00", "FALSE", "2024-01-07"]]));

    // A whole tab echoes the whole grid as its range.
    let (_, _, body) = get(&base, "v4/spreadsheets/example_sales/values/Sheet1").await;
    assert_eq!(body["range"], "Sheet1!A1:Z1000");
    assert_eq!(body["values"].as_array().unwrap().len(), 21);
}

#[tokio::test]
async fn ranges_are_normalised_and_empty_ranges_have_no_values() {
    let s = start().await;
    let base = s.base_url();
    let q = "?valueRenderOption=UNFORMATTED_VALUE";
    let (_, _, body) = get(&base, &format!("v4/spreadsheets/tabs/values/'My%20Tab'!A1:C10{q}")).await;
    assert_eq!(
        body,
        json!({"range": "'My Tab'!A1:C10", "majorDimension": "ROWS",
               "values": [["x", "", "z"], [], ["", 45296]]})
    );
    let (_, _, body) = get(&base, &format!("v4/spreadsheets/tabs/values/my%20tab!B:B{q}")).await;
    assert_eq!(body["range"], "'My Tab'!B1:B1000");
    let (_, _, body) = get(&base, &format!("v4/spreadsheets/tabs/values/A1:B2{q}")).await;
    assert_eq!(body["range"], "Sheet1!A1:B2");
    let (_, _, body) = get(&base, &format!("v4/spreadsheets/tabs/values/Sheet1!A5:C{q}")).await;
    assert_eq!(body, json!({"range": "Sheet1!A5:C1000", "majorDimension": "ROWS"}));
    let (_, _, body) = get(&base, &format!("v4/spreadsheets/tabs/values/Empty{q}")).await;
    assert_eq!(body, json!({"range": "Empty!A1:Z1000", "majorDimension": "ROWS"}));
    let (_, _, body) = get(&base, &format!("v4/spreadsheets/tabs/values/Sheet1!2:3{q}")).await;
    assert_eq!(body["range"], "Sheet1!A2:Z3");
    assert_eq!(body["values"], json!([[1, 2]]));
}

#[tokio::test]
async fn errors_have_googles_shape() {
    let s = start().await;
    let base = s.base_url();
    let (status, ct, body) = get(&base, "v4/spreadsheets/tabs/values/Nope!A1:B2").await;
    assert_eq!((status, ct.as_str()), (400, "application/json; charset=UTF-8"));
    assert_eq!(
        body,
        json!({"error": {"code": 400, "message": "Unable to parse range: Nope!A1:B2",
                         "status": "INVALID_ARGUMENT"}})
    );
    let (status, _, body) = get(&base, "v4/spreadsheets/nope/values/Sheet1").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"code": 404, "message": "Requested entity was not found.",
                         "status": "NOT_FOUND"}})
    );
    let (status, _, body) = get(&base, "v4/spreadsheets/tabs/values/Sheet1!A1001:B1002").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Range (Sheet1!A1001:B1002) exceeds grid limits. Max rows: 1000, max columns: 26"
    );
    let (status, _, body) = get(&base, "v4/spreadsheets/tabs/values/Sheet1?valueRenderOption=RAW").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("value_render_option"));

    s.forbid("tabs");
    let (status, _, body) = get(&base, "v4/spreadsheets/tabs").await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"error": {"code": 403, "message": "The caller does not have permission",
                         "status": "PERMISSION_DENIED"}})
    );
    s.allow("tabs");
    assert_eq!(get(&base, "v4/spreadsheets/tabs").await.0, 200);
}

#[tokio::test]
async fn injected_faults_are_consumed_and_counted() {
    let s = start().await;
    let base = s.base_url();
    s.fail_next("tabs", 2, 429);
    s.fail_next(FaultScope::Any, 1, 503);
    let (status, _, body) = get(&base, "v4/spreadsheets/tabs/values/Sheet1").await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(body["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
    // The `Any` fault is queued behind the first one but applies to other spreadsheets now.
    let (status, _, body) = get(&base, "v4/spreadsheets/example_sales").await;
    assert_eq!((status, body["error"]["status"].as_str()), (503, Some("UNAVAILABLE")));
    assert_eq!(get(&base, "v4/spreadsheets/tabs/values/Sheet1").await.0, 429);
    assert_eq!(get(&base, "v4/spreadsheets/tabs/values/Sheet1").await.0, 200);

    s.fail_next(FaultScope::Any, 1, 502);
    let response = reqwest::get(format!("{base}v4/spreadsheets/tabs")).await.unwrap();
    assert_eq!(response.status().as_u16(), 502);
    assert!(response.text().await.unwrap().contains("Error 502 (Server Error)"));

    let counts = s.request_count();
    assert_eq!(counts, RequestCounts { spreadsheets_get: 2, values_get: 3, values_batch_get: 0, other: 0 });
    let log = s.requests();
    assert_eq!(log[0].ranges, ["Sheet1"]);
    assert_eq!(log[0].status, 429);
    s.reset_requests();
    assert_eq!(s.request_count().total(), 0);
}

#[tokio::test]
async fn spreadsheets_get_reports_tabs_and_grid_data() {
    let s = start().await;
    let base = s.base_url();
    let (status, _, body) = get(&base, "v4/spreadsheets/example_workbook").await;
    assert_eq!(status, 200);
    assert_eq!(body["spreadsheetId"], "example_workbook");
    assert_eq!(body["properties"]["title"], "example_workbook");
    assert_eq!(body["properties"]["locale"], "en_US");
    assert_eq!(
        body["sheets"][1]["properties"],
        json!({"sheetId": 1007, "title": "Monthly Totals", "index": 1, "sheetType": "GRID",
               "gridProperties": {"rowCount": 1000, "columnCount": 26}})
    );
    assert!(body["sheets"][0].get("data").is_none());
    assert_eq!(body["spreadsheetUrl"], "https://docs.google.com/spreadsheets/d/example_workbook/edit");

    let (_, _, body) =
        get(&base, "v4/spreadsheets/example_sales?includeGridData=true&ranges=Sheet1!A2:C100&ranges=Sheet1!E2:E3")
            .await;
    let sheets = body["sheets"].as_array().unwrap();
    assert_eq!(sheets.len(), 1);
    let data = sheets[0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["startRow"], 1);
    assert!(data[0].get("startColumn").is_none());
    assert_eq!(data[0]["rowData"].as_array().unwrap().len(), 20);
    let date = &data[1]["rowData"][0]["values"][0];
    assert_eq!(data[1]["startColumn"], 4);
    assert_eq!(date["effectiveValue"], json!({"numberValue": 45296}));
    assert_eq!(date["formattedValue"], "2024-01-05");
    assert_eq!(date["effectiveFormat"]["numberFormat"], json!({"type": "DATE", "pattern": "yyyy-mm-dd"}));

    // `ranges` without grid data still selects the tabs.
    let (_, _, body) = get(&base, "v4/spreadsheets/example_workbook?ranges='Monthly%20Totals'!A1").await;
    assert_eq!(body["sheets"].as_array().unwrap().len(), 1);
    assert!(body["sheets"][0].get("data").is_none());
}

#[tokio::test]
async fn batch_get_returns_one_value_range_per_range() {
    let s = start().await;
    let (_, _, body) = get(
        &s.base_url(),
        "v4/spreadsheets/tabs/values:batchGet?ranges=Sheet1!A1:B1&ranges='My%20Tab'!C1&valueRenderOption=UNFORMATTED_VALUE",
    )
    .await;
    assert_eq!(
        body,
        json!({"spreadsheetId": "tabs", "valueRanges": [
            {"range": "Sheet1!A1:B1", "majorDimension": "ROWS", "values": [["a", "b"]]},
            {"range": "'My Tab'!C1", "majorDimension": "ROWS", "values": [["z"]]},
        ]})
    );
    assert_eq!(s.request_count().values_batch_get, 1);
}

/// The product reads through google-sheets4, which puts the range into the URL path without
/// percent-encoding quotes or `!`; this checks the server understands what it sends.
#[tokio::test]
async fn the_google_sheets4_client_reads_the_server() {
    use google_sheets4::hyper_util::client::legacy::{connect::HttpConnector, Client};
    use google_sheets4::hyper_util::rt::TokioExecutor;

    let s = start().await;
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut hub = google_sheets4::Sheets::new(client, google_sheets4::common::NoToken);
    hub.base_url(s.base_url());
    hub.root_url(s.base_url());

    let (_, ss) = hub.spreadsheets().get("example_workbook").doit().await.unwrap();
    let tabs: Vec<_> = ss
        .sheets
        .unwrap()
        .into_iter()
        .map(|t| t.properties.unwrap())
        .map(|p| (p.sheet_id.unwrap(), p.title.unwrap(), p.grid_properties.unwrap().row_count))
        .collect();
    assert_eq!(tabs, [(0, "Orders".to_owned(), Some(1000)), (1007, "Monthly Totals".to_owned(), Some(1000))]);

    let (_, vr) = hub
        .spreadsheets()
        .values_get("example_workbook", "'Monthly Totals'!A1:D")
        .value_render_option("UNFORMATTED_VALUE")
        .date_time_render_option("SERIAL_NUMBER")
        .doit()
        .await
        .unwrap();
    assert_eq!(vr.range.as_deref(), Some("'Monthly Totals'!A1:D1000"));
    assert_eq!(
        vr.values.unwrap(),
        vec![
            vec![],
            vec![json!(""), json!("month"), json!("total"), json!("note")],
            vec![json!(""), json!(45292), json!(1234.5), json!("first")],
            vec![],
            vec![json!(""), json!(45352), json!(-17.25)],
        ]
    );

    let (_, grid) = hub
        .spreadsheets()
        .get("example_workbook")
        .add_ranges("Orders!F1:G3")
        .include_grid_data(true)
        .doit()
        .await
        .unwrap();
    let data = &grid.sheets.unwrap()[0].data.clone().unwrap()[0];
    let cell = &data.row_data.as_ref().unwrap()[1].values.as_ref().unwrap()[1];
    assert_eq!(cell.formatted_value.as_deref(), Some("2024-01-06 09:30:00"));
    let format = cell.effective_format.as_ref().unwrap().number_format.as_ref().unwrap();
    assert_eq!(format.type_.as_deref(), Some("DATE_TIME"));

    s.fail_next("example_workbook", 1, 429);
    let err = hub.spreadsheets().values_get("example_workbook", "Orders").doit().await.unwrap_err();
    assert!(format!("{err}").contains("RESOURCE_EXHAUSTED"), "{err}");
}

#[tokio::test]
async fn generated_sheets_serve_in_windows() {
    let server = SheetsServer::new();
    server.put(Spreadsheet::generated("big", 5000, 7, 3));
    let s = server.spawn().await.unwrap();
    let base = s.base_url();
    let (_, _, meta) = get(&base, "v4/spreadsheets/big").await;
    assert_eq!(meta["sheets"][0]["properties"]["gridProperties"]["rowCount"], 5001);
    let mut rows = 0;
    for start in (1..=5001).step_by(2000) {
        let range = format!("Sheet1!A{start}:G{}", start + 1999);
        let (status, _, body) =
            get(&base, &format!("v4/spreadsheets/big/values/{range}?valueRenderOption=UNFORMATTED_VALUE")).await;
        assert_eq!(status, 200);
        rows += body["values"].as_array().unwrap().len();
    }
    assert_eq!(rows, 5001);
    assert_eq!(s.request_count().values_get, 3);
    s.shutdown().await.unwrap();
}
